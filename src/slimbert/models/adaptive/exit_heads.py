"""Exit heads: a classifier after every encoder layer but the last (DeeBERT's "off-ramps", Xin et al. 2020).

Each head reads the layer's [CLS] vector like BERT's own pooler + classifier: ``tanh(W_p h_cls) -> W_c``.
The last layer needs none: it exits through the model's own task head. The heads hang off the task model
as ``model.exit_heads`` (a savable module kind, so an artifact with exits reloads with them).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from slimbert.models.module_kinds import register_module_kind

EXIT_HEADS_ATTR = "exit_heads"


@register_module_kind
class ExitHeads(nn.Module):
    """Exit head i classifies the output of encoder layer i, for i < L - 1: ``dense[i]`` and ``classifier[i]``
    (plain linears, so later steps such as int8 can treat them like any linear)."""

    kind: ClassVar[str] = "exit-heads"

    def __init__(self, hidden: int, num_labels: int, count: int, dropout: float = 0.1):
        super().__init__()
        self.hidden, self.num_labels = hidden, num_labels
        self.dense = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(count))
        self.classifier = nn.ModuleList(nn.Linear(hidden, num_labels) for _ in range(count))
        self.dropout = nn.Dropout(dropout)

    def __len__(self) -> int:
        return len(self.dense)

    def logits(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        """Layer i's output (B, T, d) -> exit logits (B, C), from its [CLS] vector."""
        pooled = torch.tanh(self.dense[i](hidden[:, 0]))  # (B, d)
        return self.classifier[i](self.dropout(pooled))  # (B, C)

    def spec(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "num_labels": self.num_labels, "count": len(self)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ExitHeads":
        return cls(int(spec["hidden"]), int(spec["num_labels"]), int(spec["count"]))

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
