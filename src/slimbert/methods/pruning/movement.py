"""``method: movement``: movement pruning (Sanh, Wolf & Rush, 2020).

Magnitude pruning keeps weights that are large; movement pruning keeps weights that *move away
from zero* during fine-tuning. Each weight gets a score S trained through a straight-through
estimator (dS accumulates -W * dL/dW), in its own optimizer group with a larger learning rate.

* ``variant: hard``: keep the top v% scores per matrix, v following the cubic schedule down to
  1 - ``sparsity``; the target sparsity is met exactly.
* ``variant: soft``: keep weights with sigmoid(S) > tau (tau ramped to ``threshold`` by the cubic
  schedule) and add ``l1_weight`` * mean(sigmoid(S)) to the loss (ramped alike); the sparsity is
  an outcome of the regularization, reported after training.

Blocks (used by ``block-movement``) share one score per block; here blocks are single weights.

Accuracy-gate fallback (hard variant): 0.1 lower sparsity, the step run again, until the gate passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import less
from slimbert.methods.pruning.common.movement_pruner import MovementFields, train_movement
from slimbert.methods.pruning.common.sparse_storage import SparseStorage
from slimbert.methods.pruning.common.unstructured import finish_unstructured
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method


@dataclass(frozen=True)
class MovementConfig(MovementFields):
    """Movement pruning of the encoder linears: hard top-v or soft threshold + L1, cubic schedule."""

    storage: SparseStorage = SparseStorage()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        return self.storage.planned(super().plan(model, teacher))


@register_method("movement", MovementConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: less(cfg, "sparsity"))
def apply_movement(bundle: ModelBundle, cfg: MovementConfig, ctx: StepContext) -> ModelBundle:
    """Movement pruning (hard top-v or soft threshold), stored as bitmap + values."""
    check_transformer(bundle, "movement pruning")
    train_movement(bundle, cfg, ctx)
    finish_unstructured(bundle, ctx, cfg.storage, cfg.sparsity)
    return bundle
