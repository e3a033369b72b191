"""Product-quantized word embeddings: each row stored as ``m`` one-byte codes into ``m`` small codebooks.

Row ``v`` of the (V, d) table is split into ``m`` sub-vectors of ``d / m`` values; sub-vector ``j`` is
replaced by the nearest of ``k <= 256`` centroids of codebook ``j`` (k-means over the table's rows), so
the table costs ``V * m`` bytes of codes plus ``m * k * d / m`` floats of codebooks instead of ``V * d``
floats (MiniLM, d = 384, m = 48, k = 256: 46.9 MB -> 1.86 MB). ``m = d`` with scalar codebooks is a
per-dimension k-means codebook; ``m = 1`` is plain vector quantization (one codebook of whole rows).

Decoded by lookup at run time, on every runtime: ``codes[ids]`` (B, T, m) -> ``codebooks[j, code]``
(B, T, m, d/m) -> (B, T, d); the exported graph keeps the codes (two Gathers), so the ONNX and OpenVINO
files are small too. The codebooks are parameters (recovery training tunes them; the codes stay fixed).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from slimbert.models.module_kinds import register_module_kind


def kmeans(points: torch.Tensor, k: int, iterations: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of points (N, s): centroids (k, s) and assignments (N,); k-means++-style seeding by
    distance-weighted sampling, seeded; an emptied centroid is re-seeded at the worst-fitted point."""
    gen = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    k = min(k, n)
    centroids = points[torch.randint(n, (1,), generator=gen)]
    for _ in range(1, k):  # k-means++ seeding
        d2 = torch.cdist(points, centroids).min(dim=1).values.pow(2)
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        centroids = torch.cat([centroids, points[torch.multinomial(probs, 1, generator=gen)]])
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iterations):
        dist = torch.cdist(points, centroids)
        assign = dist.argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).to(points.dtype)
        empty = counts.squeeze(1) == 0
        centroids = torch.where(empty.unsqueeze(1), centroids, sums / counts.clamp_min(1))
        if bool(empty.any()):
            worst = dist.gather(1, assign.unsqueeze(1)).squeeze(1).topk(int(empty.sum())).indices
            centroids[empty] = points[worst]
    return centroids, torch.cdist(points, centroids).argmin(dim=1)


@register_module_kind
class CodebookEmbedding(nn.Module):
    """Word embeddings as product-quantized codes: codes (V, m) uint8, codebooks (m, k, d/m)."""

    kind: ClassVar[str] = "codebook-embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, subspaces: int, centroids: int,
                 padding_idx: int | None = None):
        super().__init__()
        if embedding_dim % subspaces:
            raise ValueError(f"subspaces {subspaces} must divide the width {embedding_dim}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.subspaces, self.centroids, self.padding_idx = subspaces, centroids, padding_idx
        self.register_buffer("codes", torch.zeros(num_embeddings, subspaces, dtype=torch.uint8))
        self.codebooks = nn.Parameter(torch.zeros(subspaces, centroids, embedding_dim // subspaces))
        # Row offsets of each subspace's codebook in the flattened (m * k, d/m) view.
        self.register_buffer("offsets", torch.arange(subspaces, dtype=torch.long) * centroids, persistent=False)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, subspaces: int, centroids: int, iterations: int = 15,
                       seed: int = 0) -> "CodebookEmbedding":
        weight = embedding.weight.detach().float().cpu()
        module = cls(embedding.num_embeddings, embedding.embedding_dim, subspaces, centroids, embedding.padding_idx)
        width = embedding.embedding_dim // subspaces
        with torch.no_grad():
            for j in range(subspaces):
                points = weight[:, j * width:(j + 1) * width]
                book, assign = kmeans(points, centroids, iterations, seed + j)
                module.codebooks[j, :book.shape[0]] = book
                module.codes[:, j] = assign.to(torch.uint8)
        return module.to(embedding.weight.device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        codes = self.codes[input_ids].long() + self.offsets  # (B, T, m): rows of the flattened codebooks
        flat = self.codebooks.reshape(-1, self.codebooks.shape[-1])  # (m * k, d/m)
        return flat[codes].reshape(*input_ids.shape, self.embedding_dim)  # (B, T, m, d/m) -> (B, T, d)

    @property
    def weight(self) -> torch.Tensor:
        """The decoded (V, d) table (for code that wants one embedding per id); computed, not stored."""
        return self.forward(torch.arange(self.num_embeddings, device=self.codes.device))

    def spec(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "subspaces": self.subspaces, "centroids": self.centroids, "padding_idx": self.padding_idx}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "CodebookEmbedding":
        return cls(spec["num_embeddings"], spec["embedding_dim"], spec["subspaces"], spec["centroids"],
                   spec.get("padding_idx"))

    def to_float(self) -> "CodebookEmbedding":
        """Already float compute: the exported graph decodes the codes itself (and stays small)."""
        return self

    def logical_params(self) -> int:
        """The table's V x d weights it stands for."""
        return self.num_embeddings * self.embedding_dim

    def logical_nonzero(self) -> int:
        return self.logical_params()

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings} x {self.embedding_dim}, {self.subspaces} subspaces x {self.centroids} "
                "centroids")
