"""``method: magnitude``: unstructured magnitude pruning (Gordon et al., 2020; Zhu & Gupta, 2017).

The encoder linears (q, k, v, attention output, FFN in/out) lose their smallest-|w| weights, either
per matrix (``scope: layer``: every matrix at the target sparsity) or against one threshold for all
of them (``scope: global``: matrices end with their own sparsities). ``mode: one-shot`` prunes once
(then optionally fine-tunes with the mask fixed); ``mode: gradual`` raises sparsity along the cubic
schedule while fine-tuning, optionally distilling from the dense model. Pruned weights are ranked
by |W * M|, so once pruned a weight stays pruned (masks only grow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from slimbert.config import MethodConfig, check_range
from slimbert.context import StepContext
from slimbert.methods.pruning.callback import GradualPruning
from slimbert.methods.pruning.checks import check_transformer
from slimbert.methods.pruning.finetune import TeacherDistillation, train_pruned
from slimbert.methods.pruning.masked_linear import MaskedLinear, wrap_linears
from slimbert.methods.pruning.masks import keep_count, topk_mask
from slimbert.methods.pruning.schedules import CubicSchedule
from slimbert.methods.pruning.sparse_storage import SparseStorage
from slimbert.methods.pruning.unstructured import finish_unstructured
from slimbert.models.bundle import ModelBundle
from slimbert.registry import register_method
from slimbert.training.config import TrainConfig

Scope = Literal["layer", "global"]


class MagnitudePruner:
    """Sets the masks of ``MaskedLinear`` modules to keep the largest |W * M| (exactly, per scope)."""

    def __init__(self, modules: list[MaskedLinear], scope: Scope, final: float, initial: float = 0.0):
        self.modules = modules
        self.scope = scope
        self.initial = initial
        self.final = final

    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        scores = [(m.weight * m.current_mask()).abs() for m in self.modules]
        if self.scope == "layer":
            for module, s in zip(self.modules, scores):
                module.set_mask(topk_mask(s, keep_count(s.numel(), sparsity)))
            return
        flat = torch.cat([s.reshape(-1) for s in scores])
        mask = topk_mask(flat, keep_count(flat.numel(), sparsity))
        for module, part in zip(self.modules, mask.split([s.numel() for s in scores])):
            module.set_mask(part.view_as(module.weight))

    def update(self, progress: float) -> None:
        self.prune_to(self.initial + (self.final - self.initial) * progress)

    def score_parameters(self) -> list[nn.Parameter]:
        return []


def wrap_masked(bundle: ModelBundle) -> list[MaskedLinear]:
    return wrap_linears(bundle.model, lambda linear, view, role: MaskedLinear(linear))


@dataclass(frozen=True)
class MagnitudeConfig(MethodConfig):
    """Magnitude pruning of the encoder linears, one-shot or gradual (cubic schedule), layer-wise or global."""

    sparsity: float = 0.7
    scope: Scope = "layer"
    mode: Literal["gradual", "one-shot"] = "gradual"
    schedule: CubicSchedule = CubicSchedule()
    finetune: bool = True  # one-shot: fine-tune afterwards with the mask fixed (gradual always trains)
    distill: TeacherDistillation | None = None
    storage: SparseStorage = SparseStorage()
    train: TrainConfig = TrainConfig(learning_rate=5e-5, epochs=1.0)

    def validate(self) -> None:
        check_range("sparsity", self.sparsity, 0, 1, high_inclusive=False)
        self.schedule.validate()
        self.train.validate()


@register_method("magnitude", MagnitudeConfig, family="pruning")
def apply_magnitude(bundle: ModelBundle, cfg: MagnitudeConfig, ctx: StepContext) -> ModelBundle:
    """Unstructured magnitude pruning (one-shot or gradual), stored as bitmap + values."""
    check_transformer(bundle, "magnitude pruning")
    pruner = MagnitudePruner(wrap_masked(bundle), cfg.scope, cfg.sparsity, cfg.schedule.initial_sparsity)
    if cfg.mode == "gradual":
        train_pruned(bundle, ctx, cfg.train, distill=cfg.distill, callbacks=[GradualPruning(pruner, cfg.schedule)],
                     name="magnitude", description=f"gradual magnitude pruning to {cfg.sparsity:.0%}")
    else:
        pruner.prune_to(cfg.sparsity)
        if cfg.finetune:
            train_pruned(bundle, ctx, cfg.train, distill=cfg.distill, name="magnitude",
                         description=f"fine-tuning at {cfg.sparsity:.0%} sparsity")
    pruner.prune_to(cfg.sparsity)  # the exact target, whatever weights training kept (a no-op when in force)
    finish_unstructured(bundle, ctx, cfg.storage, cfg.sparsity)
    return bundle
