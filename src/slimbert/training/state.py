"""TrainState: where the loop is, what it has measured; saved with every checkpoint for resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    total_steps: int
    steps_per_epoch: int
    global_step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches consumed in the current epoch
    best_metric: float | None = None
    best_step: int | None = None
    train_seconds: float = 0.0  # wall time spent training, summed over resumes
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    # Callbacks set this False while the model is not final (e.g. sparsity still ramping up), so that
    # an early, less-compressed model is never kept as "best".
    best_eligible: bool = True
    last_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        return cls(**data)

    @property
    def done(self) -> bool:
        return self.global_step >= self.total_steps
