"""Training settings shared by fine-tuning and every method that trains (distillation, QAT, pruning)."""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.config import check_range
from slimbert.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the one training loop.

    ``epochs`` may be fractional; ``max_steps`` (optimizer steps), when set, wins over epochs.
    ``eval_every``/``save_every`` are in optimizer steps; ``None`` means once per epoch (and at the end).
    """

    learning_rate: float = 5e-5
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    grad_accum_steps: int = 1
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every: int | None = None
    save_every: int | None = None
    seed: int = 42
    group_by_length: bool = True
    keep_best: bool = True
    log_every: int = 10

    def validate(self) -> None:
        check_range("learning_rate", self.learning_rate, 0, None, low_inclusive=False)
        check_range("epochs", self.epochs, 0, None, low_inclusive=False)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1)
        for name in ("batch_size", "eval_batch_size", "grad_accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "save_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 (or unset), got {value}")
