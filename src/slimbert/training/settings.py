"""Run settings shared by ``finetune``, ``eval`` and ``compress``: a quick run is one flag away."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class RunSettings:
    """Knobs shared by ``finetune``, ``eval`` and ``compress``: a quick run is one flag away."""

    data_dir: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    seed: int = 42
    max_seq_len: int = 128
    batch_size: int | None = None
    learning_rate: float | None = None

    def train_config(self, base: TrainConfig | None = None) -> TrainConfig:
        """``base`` (a method's defaults) with the command-line overrides applied."""
        cfg = base or TrainConfig()
        overrides: dict[str, Any] = {"seed": self.seed}
        for name in ("epochs", "max_steps", "batch_size", "learning_rate"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        cfg = replace(cfg, **overrides)
        cfg.validate()
        return cfg
