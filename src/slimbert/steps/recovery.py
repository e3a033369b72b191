"""Recovery fine-tuning after a one-shot transform (factorization, sharing): what it cost and what training won back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slimbert.steps.context import StepContext
from slimbert.training.config import TrainConfig

if TYPE_CHECKING:
    from slimbert.models.bundle import ModelBundle


def recover(bundle: "ModelBundle", ctx: StepContext, cfg: TrainConfig | None, name: str, description: str) -> None:
    """Note the metric right after the transform ("before recovery"), then train with the step's loss (its
    ``distill:`` block, when given) and note the metrics kept. ``cfg`` None: no recovery, nothing noted."""
    if cfg is None:
        return
    ctx.note(f"before recovery: {ctx.data.evaluate(bundle.model, bundle.tokenizer)}")
    result = ctx.train(bundle, cfg, name=name, description=description)
    if result.best_metrics:
        ctx.note(f"recovery: {result.summary()}")
