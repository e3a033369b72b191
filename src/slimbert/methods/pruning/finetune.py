"""Training a model while (or after) pruning it: the task loss, or distillation from the dense teacher.

Every pruning method that trains goes through :func:`train_pruned`, which builds the loss terms and
calls ``ctx.train`` (the one training loop). With ``distill`` set, the loss is
``logits_weight * KL(teacher || student at temperature T) + hard_label_weight * task loss`` with the
recipe's input model as the teacher, as in Sanh et al.'s movement pruning experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from slimbert.config import check_range
from slimbert.context import StepContext
from slimbert.errors import ConfigError
from slimbert.methods.distillation.loss_term import DistillationLoss
from slimbert.models.bundle import ModelBundle
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig
from slimbert.training.loop import TrainResult
from slimbert.training.losses import LossTerm, TaskLoss


@dataclass(frozen=True)
class TeacherDistillation:
    """Distil the pruned model from the dense one (the recipe's input model) on the logits."""

    temperature: float = 2.0
    logits_weight: float = 0.9
    hard_label_weight: float = 0.1

    def validate(self) -> None:
        check_range("temperature", self.temperature, 0, None, low_inclusive=False)
        check_range("logits_weight", self.logits_weight, 0, None)
        check_range("hard_label_weight", self.hard_label_weight, 0, None)


def train_pruned(bundle: ModelBundle, ctx: StepContext, cfg: TrainConfig, *, distill: TeacherDistillation | None,
                 callbacks: Sequence[Callback] = (), extra_terms: Sequence[LossTerm] = (), name: str = "train",
                 description: str | None = None) -> TrainResult:
    """Train ``bundle`` in place with the run's overrides applied to ``cfg``; return the loop's result."""
    regression = ctx.task.is_regression
    terms: list[LossTerm] = []
    teacher_term = None
    if distill is not None:
        if ctx.teacher is None:
            raise ConfigError("distill needs the recipe's input model as teacher, and this step has none")
        teacher_term = DistillationLoss(ctx.teacher.model, bundle.model, [], logits_loss="mse" if regression else "kl",
                                        temperature=distill.temperature, logits_weight=distill.logits_weight)
        terms.append(teacher_term)
        if distill.hard_label_weight > 0:
            terms.append(TaskLoss(regression, weight=distill.hard_label_weight))
    else:
        terms.append(TaskLoss(regression))
    terms.extend(extra_terms)
    try:
        result = ctx.train(bundle, ctx.settings.train_config(cfg), loss_terms=terms, callbacks=callbacks, name=name,
                           description=description or name)
    finally:
        if teacher_term is not None:
            teacher_term.close()
    if result.best_metrics:
        ctx.note(f"{name}: {result.steps} steps; kept dev metrics {result.best_metrics}")
    return result
