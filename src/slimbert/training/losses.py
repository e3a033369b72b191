"""Loss terms: the loop's other extension point. The total loss is the weighted sum of its terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LossTerm(nn.Module):
    """One weighted term of the training loss.

    ``forward(batch, outputs, model)`` returns a scalar. ``outputs`` is the model's output with
    hidden states/attentions when ``needs_hidden_states``/``needs_attentions`` is set. A term may
    own parameters (e.g. a width projection for distillation); they are trained with the model.
    """

    name: str = "loss"
    needs_hidden_states: bool = False
    needs_attentions: bool = False

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, batch: dict[str, torch.Tensor], outputs, model: nn.Module) -> torch.Tensor:
        raise NotImplementedError


class TaskLoss(LossTerm):
    """Hard-label loss: cross-entropy for classification, MSE for regression. logits: (B, C)."""

    name = "task"

    def __init__(self, regression: bool, weight: float = 1.0):
        super().__init__(weight)
        self.regression = regression

    def forward(self, batch, outputs, model):
        logits = outputs.logits
        labels = batch["labels"]
        if self.regression:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return F.cross_entropy(logits, labels)
