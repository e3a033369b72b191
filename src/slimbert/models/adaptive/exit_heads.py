"""Exit heads: a classifier after every encoder layer but the last (DeeBERT's "off-ramps", Xin et al. 2020).

Each head is pooler-style: ``tanh(W_p pooled) -> W_c``, where ``pooled`` is the layer's [CLS] vector (DeeBERT,
``pooling="cls"``) or the mean of its real tokens (``pooling="mean"``). Mean pooling is the default because the
[CLS] vector of shallow layers can carry nothing a head can read: on all-MiniLM-L6-v2 (trained with mean
pooling), [CLS] heads after layers 1-3 stayed at chance on SST-2 dev after training (52%) while the head after
layer 4 reached 86% (BENCHMARKS.md section 9). The last layer needs no head: it exits through the model's own
task head. The heads hang off the task model as ``model.exit_heads`` (a savable module kind, so an artifact with
exits reloads with them).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from slimbert.models.module_kinds import register_module_kind

EXIT_HEADS_ATTR = "exit_heads"
POOLING = ("mean", "cls")


@register_module_kind
class ExitHeads(nn.Module):
    """Exit head i classifies the output of encoder layer i, for i < L - 1: ``dense[i]`` and ``classifier[i]``
    (plain linears, so later steps such as int8 can treat them like any linear)."""

    kind: ClassVar[str] = "exit-heads"

    def __init__(self, hidden: int, num_labels: int, count: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"exit head pooling {pooling!r}; expected one of {POOLING}")
        self.hidden, self.num_labels, self.pooling = hidden, num_labels, pooling
        self.dense = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(count))
        self.classifier = nn.ModuleList(nn.Linear(hidden, num_labels) for _ in range(count))
        self.dropout = nn.Dropout(dropout)

    def __len__(self) -> int:
        return len(self.dense)

    def logits(self, i: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Layer i's output (B, T, d) and key mask (B, T) -> exit logits (B, C)."""
        if self.pooling == "cls":
            vector = hidden[:, 0]  # (B, d)
        else:  # the mean of the real tokens
            weights = mask.to(hidden.dtype)[:, :, None]  # (B, T, 1)
            vector = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, d)
        pooled = torch.tanh(self.dense[i](vector))  # (B, d)
        return self.classifier[i](self.dropout(pooled))  # (B, C)

    def spec(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "num_labels": self.num_labels, "count": len(self), "pooling": self.pooling}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ExitHeads":
        return cls(int(spec["hidden"]), int(spec["num_labels"]), int(spec["count"]), spec.get("pooling", "cls"))

    def to_float(self) -> "ExitHeads":
        return self

    def flops_per_exit(self) -> int:
        """Matrix-product FLOPs of one head on one example."""
        return 2 * self.hidden * self.hidden + 2 * self.hidden * self.num_labels

    def init_from(self, dense: nn.Linear | None, classifier: nn.Linear) -> "ExitHeads":
        """Start every head as a copy of the model's own [CLS] projection and classifier (where the shapes match),
        so training starts from a head that already reads a [CLS] vector."""
        for i in range(len(self)):
            if dense is not None and dense.weight.shape == self.dense[i].weight.shape:
                self.dense[i] = copy.deepcopy(dense)
            if classifier.weight.shape == self.classifier[i].weight.shape:
                self.classifier[i] = copy.deepcopy(classifier)
        return self


def exit_heads_of(model: nn.Module) -> ExitHeads | None:
    heads = getattr(model, EXIT_HEADS_ATTR, None)
    return heads if isinstance(heads, ExitHeads) else None
