"""Matrix decomposition (survey section 3.4): low-rank factorization of weight matrices.

Methods (one file per registered name): ``svd`` (truncated SVD, or Fisher-weighted SVD with
``weighting: fisher``) of the encoder linears; ``albert-embeddings`` (ALBERT's V x E + E x d word
embeddings). Machinery shared by several of them (the low-rank module kind, Fisher
estimation, rank allocation) lives in :mod:`.common`.
"""

from slimbert.methods.factorization import albert_embeddings, svd  # noqa: F401
