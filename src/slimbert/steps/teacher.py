"""A step's teacher: the ``distill:`` block that any training step of a recipe may carry.

    - method: prune-heads
      fraction: 0.4
      distill: {temperature: 2.0, logits_weight: 0.9, hard_label_weight: 0.1}

The block is an option of the *step*, not a field of the method's config: the step machinery turns
it into loss terms of the one training loop (:meth:`slimbert.steps.context.StepContext.train`), so
every method that trains through the step's loss gets distillation from the recipe's teacher (its
input model) without a flag of its own. The loss is

    logits_weight * KL(teacher || student at temperature T)        (MSE of the logits for regression)
  + hidden_weight * sum over i = 0..L of MSE(hidden_i)            (TernaryBERT; same depth and width)
  + hard_label_weight * task loss

(Hinton et al. 2015; Sanh et al. 2020 distil their pruned models this way; Zhang et al. 2020 add
the hidden states for TernaryBERT). A method may register a default block (``ternary`` does: it is
distillation-trained by definition); a recipe's block is merged field by field onto that default,
and ``distill: null`` switches distillation off.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimbert.config import check_range
from slimbert.errors import ConfigError
from slimbert.model_shape import ModelShape
from slimbert.models.structure import config_value
from slimbert.training.distillation.loss_term import DistillationLoss
from slimbert.training.distillation.matches import LayerMatch
from slimbert.training.losses import LossTerm, TaskLoss


@dataclass(frozen=True)
class StepDistillation:
    """Distil a training step from the recipe's teacher (its input model)."""

    temperature: float = 2.0
    logits_weight: float = 0.9
    hard_label_weight: float = 0.1
    hidden_weight: float = 0.0  # > 0: MSE on every layer's hidden states (teacher and student of equal shape)

    def validate(self) -> None:
        check_range("temperature", self.temperature, 0, None, low_inclusive=False)
        for name in ("logits_weight", "hard_label_weight", "hidden_weight"):
            check_range(name, getattr(self, name), 0, None)

    def check_shapes(self, student: ModelShape, teacher: ModelShape) -> None:
        """Hidden-state matching pairs layer i with layer i: the two models need the same depth and width."""
        if self.hidden_weight > 0 and (student.layers, student.hidden) != (teacher.layers, teacher.hidden):
            raise ConfigError(
                f"distill.hidden_weight matches every layer's hidden states, but the student has {student.layers} "
                f"layers of width {student.hidden} and the teacher {teacher.layers} of width {teacher.hidden}; "
                "set hidden_weight: 0, or use method: distill with explicit layer matches")

    def loss_terms(self, teacher: nn.Module, student: nn.Module, regression: bool
                   ) -> tuple[DistillationLoss, list[LossTerm]]:
        """The teacher term (call its ``close()`` after training) and all terms in loss order."""
        matches = []
        if self.hidden_weight > 0:
            layers = config_value(student, "layers")
            matches = [LayerMatch(teacher=i, student=i, feature="hidden", loss="mse", weight=self.hidden_weight)
                       for i in range(layers + 1)]
        term = DistillationLoss(teacher, student, matches, logits_loss="mse" if regression else "kl",
                                temperature=self.temperature, logits_weight=self.logits_weight)
        terms: list[LossTerm] = [term]
        if self.hard_label_weight > 0:
            terms.append(TaskLoss(regression, weight=self.hard_label_weight))
        return term, terms
