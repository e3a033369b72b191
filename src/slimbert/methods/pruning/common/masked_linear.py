"""Training-time masked linears with an explicit bake (the mask is state, the weight is derived).

``MaskedLinear`` holds a 0/1 mask buffer that a pruner rewrites (magnitude pruning, lottery
tickets); ``MovementLinear`` derives its mask from learned scores, one score per block of weights
(Sanh et al. 2020 with 1x1 blocks; Lagunas et al. 2021 with larger blocks, rows or columns).
Both compute ``y = x @ (W * M)^T + b`` and reuse the wrapped linear's own ``weight`` and ``bias``
parameters, so optimizer groups and checkpoints see the same names as before plus ``mask`` or
``scores``. The module structure is fixed for the whole training run (resume after kill -9
works); ``bake`` turns each wrapper back into a plain ``nn.Linear`` with the mask multiplied in.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.masks import ThresholdBinarizer, TopKBinarizer
from slimbert.models.structure import LayerView, layer_views


class PrunableLinear(nn.Module):
    """Base of the masked wrappers: weight (out, in), bias (out,), and a mask of the weight's shape."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if type(linear) is not nn.Linear:
            raise ConfigError(f"unstructured pruning wraps plain nn.Linear layers, found {type(linear).__name__}; "
                              "put pruning steps before quantization steps")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_parameter("weight", linear.weight)
        self.register_parameter("bias", linear.bias)

    def current_mask(self) -> torch.Tensor:
        """The mask (out, in) in force now (0/1, in the weight's dtype)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.current_mask(), self.bias)

    @torch.no_grad()
    def bake(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is ``W * M`` (exact zeros where pruned)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight.copy_(self.weight * self.current_mask())
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class MaskedLinear(PrunableLinear):
    """A linear with a 0/1 ``mask`` buffer (bool, saved with checkpoints) set by a pruner."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        self.register_buffer("mask", torch.ones(linear.weight.shape, dtype=torch.bool, device=linear.weight.device))

    def current_mask(self) -> torch.Tensor:
        return self.mask.to(self.weight.dtype)

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor) -> None:
        self.mask.copy_(mask.bool())


class MovementLinear(PrunableLinear):
    """Weights masked by learned movement ``scores``, one per (rows x cols) block: (out/rows, in/cols).

    ``variant="hard"``: the ``keep_fraction`` highest-scoring blocks survive (Top_v);
    ``variant="soft"``: blocks with sigmoid(score) > ``threshold`` survive. Scores start at 0 and are
    trained through a straight-through estimator, so a block's score accumulates
    -sum(W * dL/dW) over its weights: weights moving away from zero gain score.
    ``keep_fraction`` / ``threshold`` are set by the schedule before every step (never saved:
    they are a function of the step).
    """

    def __init__(self, linear: nn.Linear, block: tuple[int, int] = (1, 1),
                 variant: Literal["hard", "soft"] = "hard"):
        super().__init__(linear)
        rows, cols = block
        if rows < 1 or cols < 1 or self.out_features % rows or self.in_features % cols:
            raise ConfigError(f"block {rows}x{cols} does not tile a {self.out_features}x{self.in_features} weight; "
                              "choose block sizes that divide the matrix sizes (e.g. the head size)")
        self.block = (rows, cols)
        self.variant = variant
        self.scores = nn.Parameter(torch.zeros(self.out_features // rows, self.in_features // cols,
                                               device=linear.weight.device))
        self.keep_fraction = 1.0
        self.threshold = 0.0
        self._frozen_block_mask: torch.Tensor | None = None

    def freeze(self, frozen: bool = True) -> None:
        """Fix the mask at the current scores (``frozen=False``: follow the scores again).

        A frozen mask passes no gradient to the scores, so they stop changing and a resumed run
        recomputes the same mask from its checkpointed scores.
        """
        self._frozen_block_mask = None
        if frozen:
            with torch.no_grad():
                self._frozen_block_mask = self._binarize(self.scores.detach())

    @property
    def frozen(self) -> bool:
        return self._frozen_block_mask is not None

    def _binarize(self, scores: torch.Tensor) -> torch.Tensor:
        if self.variant == "hard":
            return TopKBinarizer.apply(scores, self.keep_fraction)
        return ThresholdBinarizer.apply(scores, self.threshold)

    def block_mask(self) -> torch.Tensor:
        """The 0/1 mask per block (out/rows, in/cols), differentiable w.r.t. the scores (STE) unless frozen."""
        if self._frozen_block_mask is not None:
            return self._frozen_block_mask
        return self._binarize(self.scores)

    def current_mask(self) -> torch.Tensor:
        mask = self.block_mask()
        rows, cols = self.block
        if rows > 1:
            mask = mask.repeat_interleave(rows, dim=0)
        if cols > 1:
            mask = mask.repeat_interleave(cols, dim=1)
        return mask.to(self.weight.dtype)


def wrap_linears(model: nn.Module, make, roles: tuple[str, ...] | None = None) -> list[PrunableLinear]:
    """Replace the encoder linears of ``roles`` (default: all six per layer) by ``make(linear, view, role)``."""
    wrappers = []
    for view in layer_views(model):
        for role in roles or view.arch.linear_roles:
            wrapper = make(view.module(role), view, role)
            view.replace(role, wrapper)
            wrappers.append(wrapper)
    return wrappers


def prunable_linears(model: nn.Module) -> list[tuple[LayerView, str, PrunableLinear]]:
    """Every masked wrapper among the encoder linears, with its layer view and role."""
    return [(view, role, module) for view in layer_views(model) for role, module in view.linears().items()
            if isinstance(module, PrunableLinear)]


def bake(model: nn.Module) -> int:
    """Replace every masked wrapper by its baked ``nn.Linear`` (in place); return how many."""
    found = prunable_linears(model)
    for view, role, module in found:
        view.replace(role, module.bake())
    return len(found)
