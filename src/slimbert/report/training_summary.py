"""The summary ``slimbert finetune`` writes last (``training_summary.json``): its presence means "finished".

Fields: the ``model`` fine-tuned and the ``task``; dev ``metrics`` (fractions) of the kept weights and
the task's ``main_metric``; optimizer ``steps`` run and the ``best_step`` kept; ``train_examples``;
``train_seconds`` (summed over resumes) and ``wall_seconds_this_run``; ``resumed_from_step`` (None
when this process started fresh); the ``train_config`` and run ``settings`` used; the
``eval_history`` (one entry per evaluation: step and metrics); the ``environment``; the ``fingerprint``
the output is reused for (model, task, training settings).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimbert.config import build_dataclass, to_plain
from slimbert.report.card import Environment
from slimbert.training.config import TrainConfig
from slimbert.training.settings import RunSettings


@dataclass(frozen=True)
class TrainingSummary:
    model: str
    task: str
    metrics: dict[str, float]
    main_metric: str
    steps: int
    best_step: int | None
    train_examples: int
    train_seconds: float
    wall_seconds_this_run: float
    resumed_from_step: int | None
    train_config: TrainConfig
    settings: RunSettings
    eval_history: tuple[dict[str, Any], ...]
    environment: Environment
    fingerprint: dict[str, Any] | None = None  # what the run is keyed by for reuse (None: written before it was)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training summary") -> "TrainingSummary":
        return build_dataclass(cls, data, where)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename): a summary on disk is always complete."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)
