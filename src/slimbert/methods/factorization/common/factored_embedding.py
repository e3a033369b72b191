"""ALBERT's factorized embedding parametrization: a V x E lookup then an E x d projection.

``ids (B, T) -> lookup (B, T, E) -> project (B, T, d)``: ``V*E + E*d`` weights instead of ``V*d``.
For MiniLM-L6 (V = 30,522, d = 384) at E = 128: 11.7M -> 3.96M weights (2.96x smaller).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from slimbert.models.module_kinds import FactoredComposite, register_module_kind


@register_module_kind
class FactoredEmbedding(FactoredComposite):
    """Word embeddings as ``project(lookup(ids))``: lookup (V, E), project E -> d (no bias)."""

    kind: ClassVar[str] = "factored-embedding"
    parts: ClassVar[tuple[str, ...]] = ("lookup", "project")  # plain modules: later steps may quantize them

    def __init__(self, num_embeddings: int, embedding_dim: int, factor_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.factor_dim = num_embeddings, embedding_dim, factor_dim
        self.padding_idx = padding_idx
        self.lookup = nn.Embedding(num_embeddings, factor_dim, padding_idx=padding_idx)  # (V, E)
        self.project = nn.Linear(factor_dim, embedding_dim, bias=False)  # weight (d, E)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, factor_dim: int) -> "FactoredEmbedding":
        """The rank-E truncated SVD of the (V, d) table: lookup = U_E S_E (V, E), project = V_E^T (E, d)."""
        u, s, vh = torch.linalg.svd(embedding.weight.detach().float(), full_matrices=False)
        module = cls(embedding.num_embeddings, embedding.embedding_dim, factor_dim, embedding.padding_idx)
        with torch.no_grad():
            module.lookup.weight.copy_(u[:, :factor_dim] * s[:factor_dim])
            module.project.weight.copy_(vh[:factor_dim].T)
        return module.to(embedding.weight.device, embedding.weight.dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.lookup(input_ids))

    @property
    def weight(self) -> torch.Tensor:
        """The (V, d) table these factors stand for (read by code that wants one embedding per token, e.g.
        augmentation's nearest neighbours); computed, not stored."""
        lookup = self.lookup.weight if type(self.lookup) is nn.Embedding else self.lookup.to_float().weight
        project = self.project.weight if type(self.project) is nn.Linear else self.project.to_float().weight
        return lookup @ project.T

    def spec(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "factor_dim": self.factor_dim, "padding_idx": self.padding_idx,
                "factors": self.factor_specs()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "FactoredEmbedding":
        module = cls(spec["num_embeddings"], spec["embedding_dim"], spec["factor_dim"], spec.get("padding_idx"))
        return module.restore_parts(spec)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.factor_dim} -> {self.embedding_dim}"
