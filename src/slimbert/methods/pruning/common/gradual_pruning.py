"""The pruning callback: moves a pruner along the cubic schedule during the one training loop.

A pruner is anything with ``update(progress)`` (progress p in [0, 1] of the cubic ramp: 0 before
the warm-up ends, 1 from the start of the cool-down) and ``score_parameters()`` (learned scores that
want their own optimizer group, e.g. movement scores with a 100x larger learning rate). Until the
ramp is complete ``state.best_eligible`` is False, so an early, denser model is never kept as the
"best" checkpoint. Progress is a function of the step, so a resumed run continues the schedule
where it stopped; the pruner's masks/scores are module buffers/parameters saved with checkpoints.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from slimbert.methods.pruning.common.schedules import CubicSchedule
from slimbert.training.callbacks import Callback
from slimbert.training.state import TrainState


class Pruner(Protocol):
    def update(self, progress: float) -> None: ...

    def score_parameters(self) -> list[nn.Parameter]: ...


class GradualPruning(Callback):
    """Calls ``pruner.update(p_t)`` at Zhu & Gupta's pruning steps (every ``update_every`` steps on the ramp)."""

    def __init__(self, pruner: Pruner, schedule: CubicSchedule, score_learning_rate: float | None = None):
        self.pruner = pruner
        self.schedule = schedule
        self.score_learning_rate = score_learning_rate
        self.applied: float | None = None  # the progress last applied

    def on_train_begin(self, state: TrainState, model: nn.Module) -> None:
        if self.applied is not None:  # resumed: restore what lives outside the checkpoint (e.g. a top-v fraction)
            self.pruner.update(self.applied)

    def on_step_begin(self, state: TrainState, model: nn.Module) -> None:
        step, total = state.global_step, state.total_steps
        progress = self.schedule.progress(step, total)
        if self.applied is None or (progress != self.applied and self.schedule.is_update_step(step, total)):
            self.pruner.update(progress)
            self.applied = progress
        state.best_eligible = self.applied >= 1.0

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]] | None:
        scores = self.pruner.score_parameters()
        if not scores or self.score_learning_rate is None:
            return None
        return [{"params": scores, "lr": self.score_learning_rate, "weight_decay": 0.0}]

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.applied = state.get("applied")
