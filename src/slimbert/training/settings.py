"""Run settings shared by ``finetune``, ``eval`` and ``compress``: a quick run is one flag away."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from slimbert.errors import ConfigError
from slimbert.training.config import TrainConfig

DEFAULT_SEQ_LEN = 128
# Settings that change what a run produces (what resume and reuse are keyed by); the others do not.
TRAINING_FIELDS = ("max_train_samples", "epochs", "max_steps", "seed", "max_seq_len", "batch_size", "learning_rate",
                   "holdout", "holdout_mode")


@dataclass(frozen=True)
class RunSettings:
    """Knobs shared by ``finetune``, ``eval`` and ``compress``: a quick run is one flag away.

    ``max_seq_len`` None means the default (128) clamped to the model's positions, with a note
    (:meth:`for_model`); an explicit value above the model's positions is refused.
    """

    data_dir: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    seed: int = 42
    max_seq_len: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    holdout: int | None = None  # training examples set aside, never trained on (for choosing between models)
    # "random": any training examples; "sentences": whole sentences, their phrases dropped from training
    # (slimbert.data.holdout: SST-2's random held-out phrases are mostly pieces of training phrases)
    holdout_mode: Literal["random", "sentences"] = "random"
    eval_split: Literal["dev", "heldout"] = "dev"  # evaluate on the dev split(s), or on the held-out examples

    def validate(self) -> None:
        """Refuse values no run can use: non-finite or non-positive numbers (``--lr inf``, ``--epochs 0``)."""
        for name, flag in (("learning_rate", "--lr"), ("epochs", "--epochs")):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} must be a finite number > 0, got {value}")
        for name in ("max_train_samples", "max_eval_samples", "max_steps", "max_seq_len", "batch_size", "holdout"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.holdout_mode not in ("random", "sentences"):
            raise ConfigError(f"--holdout-mode must be random or sentences, got {self.holdout_mode!r}")
        if self.holdout_mode == "sentences" and not self.holdout:
            raise ConfigError("holdout_mode sentences needs holdout: the number of sentences to set aside")
        if self.eval_split == "heldout" and not self.holdout:
            raise ConfigError("eval_split heldout needs holdout: the number of training examples to set aside")

    @property
    def seq_len(self) -> int:
        """The sequence length inputs are truncated to."""
        return self.max_seq_len if self.max_seq_len is not None else DEFAULT_SEQ_LEN

    def for_model(self, positions: int | None, model: str) -> tuple["RunSettings", str | None]:
        """These settings with the sequence length fitted to a model with ``positions`` positions, and a note
        when the default had to be lowered; an explicit ``--max-seq-len`` beyond the positions is refused."""
        if positions is None:
            return self, None
        if self.max_seq_len is not None:
            if self.max_seq_len > positions:
                raise ConfigError(f"--max-seq-len {self.max_seq_len} is more than the {positions} positions of "
                                  f"{model}; pass --max-seq-len {positions} or less")
            return self, None
        if DEFAULT_SEQ_LEN <= positions:
            return replace(self, max_seq_len=DEFAULT_SEQ_LEN), None
        return (replace(self, max_seq_len=positions),
                f"{model} has {positions} positions: inputs are truncated to --max-seq-len {positions} "
                f"(default {DEFAULT_SEQ_LEN})")

    def training_fields(self) -> dict[str, Any]:
        """The settings that change what training produces (not data location, eval samples)."""
        return {k: v for k, v in asdict(self).items() if k in TRAINING_FIELDS}

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
