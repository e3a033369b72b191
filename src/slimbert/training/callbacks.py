"""Callbacks: the loop's extension point for schedules and observers (pruning, QAT, exits).

A callback may keep state; it is saved with checkpoints (``state_dict``) so that a resumed run
continues the schedule where it stopped.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from slimbert.training.state import TrainState


class Callback:
    """Hooks called by :func:`slimbert.training.loop.train`; override what you need."""

    def on_train_begin(self, state: TrainState, model: nn.Module) -> None: ...

    def on_step_begin(self, state: TrainState, model: nn.Module) -> None:
        """Before the forward pass of an optimizer step (``state.global_step`` steps done so far)."""

    def on_after_backward(self, state: TrainState, model: nn.Module) -> None:
        """Gradients of this micro-batch are in ``.grad`` (accumulated)."""

    def on_step_end(self, state: TrainState, model: nn.Module) -> None:
        """After the optimizer step; ``state.global_step`` already counts it."""

    def on_evaluate(self, state: TrainState, model: nn.Module, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, state: TrainState, model: nn.Module) -> None: ...

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]] | None:
        """Optional optimizer groups for parameters this callback owns (e.g. a different lr)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
