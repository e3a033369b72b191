"""``method: magnitude``: unstructured magnitude pruning (Gordon et al., 2020; Zhu & Gupta, 2017).

The encoder linears (q, k, v, attention output, FFN in/out) lose their smallest-|w| weights, either
per matrix (``scope: layer``: every matrix at the target sparsity) or against one threshold for all
of them (``scope: global``: matrices end with their own sparsities). ``mode: one-shot`` prunes once
(then optionally fine-tunes with the mask fixed); ``mode: gradual`` raises sparsity along the cubic
schedule while fine-tuning, optionally distilling from the dense model. Pruned weights are ranked
by |W * M|, so once pruned a weight stays pruned (masks only grow).

Accuracy-gate fallback: 0.1 lower sparsity, the step run again (training included), until the gate passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slimbert.config import MethodConfig, check_range
from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import less
from slimbert.methods.pruning.common.fine_tuning import train_pruned
from slimbert.methods.pruning.common.gradual_pruning import GradualPruning
from slimbert.methods.pruning.common.magnitude_pruner import MagnitudePruner, Scope, wrap_masked
from slimbert.methods.pruning.common.schedules import CubicSchedule
from slimbert.methods.pruning.common.sparse_storage import SparseStorage
from slimbert.methods.pruning.common.unstructured import finish_unstructured
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class MagnitudeConfig(MethodConfig):
    """Magnitude pruning of the encoder linears, one-shot or gradual (cubic schedule), layer-wise or global."""

    sparsity: float = 0.7
    scope: Scope = "layer"
    mode: Literal["gradual", "one-shot"] = "gradual"
    schedule: CubicSchedule = CubicSchedule()
    finetune: bool = True  # one-shot: fine-tune afterwards with the mask fixed (gradual always trains)
    storage: SparseStorage = SparseStorage()
    train: TrainConfig = TrainConfig(learning_rate=5e-5, epochs=1.0)

    def validate(self) -> None:
        check_range("sparsity", self.sparsity, 0, 1, high_inclusive=False)
        self.schedule.validate()
        self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "magnitude pruning")
        return self.storage.planned(model)


@register_method("magnitude", MagnitudeConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: less(cfg, "sparsity"))
def apply_magnitude(bundle: ModelBundle, cfg: MagnitudeConfig, ctx: StepContext) -> ModelBundle:
    """Unstructured magnitude pruning (one-shot or gradual), stored as bitmap + values."""
    check_transformer(bundle, "magnitude pruning")
    pruner = MagnitudePruner(wrap_masked(bundle), cfg.scope, cfg.sparsity, cfg.schedule.initial_sparsity)
    if cfg.mode == "gradual":
        train_pruned(bundle, ctx, cfg.train, callbacks=[GradualPruning(pruner, cfg.schedule)],
                     name="magnitude", description=f"gradual magnitude pruning to {cfg.sparsity:.0%}")
    else:
        pruner.prune_to(cfg.sparsity)
        if cfg.finetune:
            train_pruned(bundle, ctx, cfg.train, name="magnitude",
                         description=f"fine-tuning at {cfg.sparsity:.0%} sparsity")
    pruner.prune_to(cfg.sparsity)  # the exact target, whatever weights training kept (a no-op when in force)
    finish_unstructured(bundle, ctx, cfg.storage, cfg.sparsity)
    return bundle
