"""Magnitude masks: keep the largest |W * M| of the encoder linears, per matrix or against one global threshold
(used by gradual and one-shot magnitude pruning and by lottery tickets)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from slimbert.methods.pruning.common.masked_linear import MaskedLinear, wrap_linears
from slimbert.methods.pruning.common.masks import keep_count, topk_mask
from slimbert.models.bundle import ModelBundle

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
