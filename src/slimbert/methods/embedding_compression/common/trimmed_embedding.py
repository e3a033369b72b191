"""A word-embedding table holding only the kept vocabulary, behind an id remap.

``ids (B, T) -> remap[ids] (B, T) -> table (B, T, d)``: ``remap`` (V,) sends each of the tokenizer's V ids
to its row among the V' kept ones, and every piece that was not kept to the [UNK] row. The tokenizer is
untouched, so the original WordPiece/BPE segmentation is kept exactly; only ids outside the kept set
change meaning (to [UNK]). The remap costs V int32s (122 KB for BERT's 30,522 pieces) next to a
table of V' x d floats.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from slimbert.models.module_kinds import FactoredComposite, register_module_kind


@register_module_kind
class TrimmedEmbedding(FactoredComposite):
    """Word embeddings over a kept subset of the vocabulary: ``table(remap[ids])``; table (V', d), remap (V,)."""

    kind: ClassVar[str] = "trimmed-embedding"
    parts: ClassVar[tuple[str, ...]] = ("table",)  # a plain embedding: int8 embedding quantization applies

    def __init__(self, num_embeddings: int, embedding_dim: int, kept: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.kept = num_embeddings, embedding_dim, kept
        self.padding_idx = padding_idx
        self.register_buffer("remap", torch.zeros(num_embeddings, dtype=torch.int32))
        self.table = nn.Embedding(kept, embedding_dim)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, kept_ids: list[int], unk_id: int) -> "TrimmedEmbedding":
        """Keep the rows ``kept_ids`` (sorted, must include ``unk_id``); every other id maps to [UNK]'s row."""
        kept_ids = sorted(set(kept_ids))
        if unk_id not in kept_ids:
            raise ValueError(f"the kept vocabulary must include the [UNK] id {unk_id}")
        module = cls(embedding.num_embeddings, embedding.embedding_dim, len(kept_ids), embedding.padding_idx)
        index = torch.tensor(kept_ids, dtype=torch.long)
        remap = torch.full((embedding.num_embeddings,), kept_ids.index(unk_id), dtype=torch.int32)
        remap[index] = torch.arange(len(kept_ids), dtype=torch.int32)
        with torch.no_grad():
            module.remap.copy_(remap)
            module.table.weight.copy_(embedding.weight.detach()[index])
        return module.to(embedding.weight.device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.remap[input_ids].long())

    @property
    def weight(self) -> torch.Tensor:
        """The (V, d) table this stands for: kept rows, and the [UNK] row for every piece not kept (read by code
        that wants one embedding per id, e.g. augmentation's nearest neighbours); computed, not stored."""
        table = self.table.weight if type(self.table) is nn.Embedding else self.table.to_float().weight
        return table[self.remap.long()]

    def spec(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "kept": self.kept,
                "padding_idx": self.padding_idx, "factors": self.factor_specs()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "TrimmedEmbedding":
        module = cls(spec["num_embeddings"], spec["embedding_dim"], spec["kept"], spec.get("padding_idx"))
        return module.restore_parts(spec)

    def logical_params(self) -> int:
        """Weights stored: the kept rows (the remap is an index, not weights)."""
        part = self.table
        return part.logical_params() if hasattr(part, "logical_params") else part.weight.numel()

    def logical_nonzero(self) -> int:
        part = self.table
        return part.logical_nonzero() if hasattr(part, "logical_nonzero") else int((part.weight != 0).sum())

    def extra_repr(self) -> str:
        return f"{self.num_embeddings} ids -> {self.kept} kept rows x {self.embedding_dim}"
