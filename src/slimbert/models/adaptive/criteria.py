"""When an example may leave the encoder early: pure functions of exit logits, per example.

* ``entropy`` (DeeBERT, Xin et al. 2020; FastBERT, Liu et al. 2020 normalise it by log C, as here): exit when
  the entropy of the softmax, divided by log C, is below the threshold (0: never; 1: always).
* ``confidence``: exit when the top class probability is at least the threshold.
* ``patience`` (PABEE, Zhou et al. 2020): exit when the prediction has stayed the same for ``patience``
  consecutive exit heads.

Every decision reads only its own example's logits, so an example exits at the same layer alone or in a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slimbert.errors import ConfigError

CRITERIA = ("entropy", "confidence", "patience")


@dataclass(frozen=True)
class ExitCriterion:
    kind: str = "entropy"
    threshold: float = 0.3  # entropy: max normalised entropy; confidence: min top probability
    patience: int = 2  # patience: agreeing consecutive exits

    def validate(self) -> "ExitCriterion":
        if self.kind not in CRITERIA:
            raise ConfigError(f"exit criterion {self.kind!r} is unknown; choose one of {', '.join(CRITERIA)}")
        if self.kind == "patience" and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 (consecutive agreeing exit heads), got {self.patience}")
        if self.kind in ("entropy", "confidence") and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"the {self.kind} threshold is a fraction in [0, 1], got {self.threshold}")
        return self


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) logits -> (B,) entropy of the softmax / log C, in [0, 1]."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(logits.shape[-1])


@dataclass
class PatienceState:
    """Per example (B,): the previous exit's prediction and how many exits in a row agreed with it."""

    previous: torch.Tensor  # (B,) long, -1 before the first exit
    streak: torch.Tensor  # (B,) long

    @classmethod
    def start(cls, batch: int, device=None) -> "PatienceState":
        return cls(torch.full((batch,), -1, dtype=torch.long, device=device),
                   torch.zeros(batch, dtype=torch.long, device=device))

    def select(self, rows: torch.Tensor) -> "PatienceState":
        return PatienceState(self.previous[rows], self.streak[rows])


def should_exit(criterion: ExitCriterion, logits: torch.Tensor,
                state: PatienceState) -> tuple[torch.Tensor, PatienceState]:
    """(B, C) exit logits -> (B,) bool "exit now", and the updated patience state."""
    if criterion.kind == "entropy":
        return normalised_entropy(logits) < criterion.threshold, state
    if criterion.kind == "confidence":
        return torch.softmax(logits.float(), dim=-1).max(-1).values >= criterion.threshold, state
    prediction = logits.argmax(-1)
    streak = torch.where(prediction == state.previous, state.streak + 1, torch.zeros_like(state.streak))
    return streak >= criterion.patience, PatienceState(prediction, streak)
