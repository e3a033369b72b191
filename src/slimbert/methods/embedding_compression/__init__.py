"""Embedding compression: the word-embedding table, where a small model's size lives.

Methods (one file per registered name): ``vocab-trim`` (keep the pieces a task uses),
``embedding-codebook`` (product-quantized rows, decoded by lookup at run time). ALBERT's
factorized embeddings are ``albert-embeddings`` in :mod:`slimbert.methods.factorization`.
"""

from slimbert.methods.embedding_compression import embedding_codebook, vocab_trim  # noqa: F401
