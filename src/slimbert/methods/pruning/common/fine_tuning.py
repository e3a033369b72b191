"""Training a model while (or after) pruning it, through the step's loss.

The loss is the step's (:meth:`slimbert.steps.context.StepContext.train`): the task loss, or
distillation from the dense input model when the recipe step has a ``distill:`` block, as in Sanh
et al.'s movement pruning experiments; pruning methods only add their callbacks and extra terms.
"""

from __future__ import annotations

from typing import Sequence

from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig
from slimbert.training.loop import TrainResult
from slimbert.training.losses import LossTerm


def train_pruned(bundle: ModelBundle, ctx: StepContext, cfg: TrainConfig, *, callbacks: Sequence[Callback] = (),
                 extra_terms: Sequence[LossTerm] = (), name: str = "train", description: str | None = None
                 ) -> TrainResult:
    """Train ``bundle`` in place with the step's loss (+ ``extra_terms``); note the dev metrics it kept."""
    result = ctx.train(bundle, cfg, extra_terms=extra_terms, callbacks=callbacks, name=name,
                       description=description or name)
    if result.best_metrics:
        ctx.note(f"{name}: {result.summary()}")
    return result
