"""Movement scores and their schedule, shared by ``movement`` (one score per weight) and ``block-movement``
(one per block): the learned-score linears are wrapped, trained along the cubic schedule, left at their final
masks (Sanh, Wolf & Rush, 2020; Lagunas et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from slimbert.config import MethodConfig, check_range
from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fine_tuning import train_pruned
from slimbert.methods.pruning.common.gradual_pruning import GradualPruning
from slimbert.methods.pruning.common.masked_linear import MovementLinear, wrap_linears
from slimbert.methods.pruning.common.schedules import CubicSchedule
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import LayerView
from slimbert.steps.context import StepContext
from slimbert.training.config import TrainConfig
from slimbert.training.losses import LossTerm

Variant = Literal["hard", "soft"]


class ScoreL1(LossTerm):
    """Mean over scored matrices of mean(sigmoid(S)): the L1 penalty of soft movement pruning.

    Its weight is set by :class:`MovementPruner` as the schedule advances (0 before the ramp).
    The modules are held in a plain list: they belong to the model, not to the loss.
    """

    name = "score_l1"

    def __init__(self, modules: list[MovementLinear]):
        super().__init__(weight=0.0)
        self._scored = list(modules)

    def forward(self, batch, outputs, model):
        return torch.stack([torch.sigmoid(m.scores).mean() for m in self._scored]).mean()


class MovementPruner:
    """Moves the kept fraction (hard) or the score threshold and L1 weight (soft) along the schedule.

    ``sparsities[i]`` is module i's final sparsity (hard variant; blocks of a matrix compete only
    with each other, as in Sanh et al.'s per-matrix Top_v).
    """

    def __init__(self, modules: list[MovementLinear], variant: Variant, *, sparsities: list[float] | None = None,
                 initial_sparsity: float = 0.0, threshold: float = 0.1, l1: ScoreL1 | None = None,
                 l1_weight: float = 0.0, freeze_after_ramp: bool = False):
        self.modules = modules
        self.freeze_after_ramp = freeze_after_ramp
        self.variant = variant
        self.sparsities = sparsities
        self.initial_sparsity = initial_sparsity
        self.threshold = threshold
        self.l1 = l1
        self.l1_weight = l1_weight

    def update(self, progress: float) -> None:
        for i, m in enumerate(self.modules):
            if self.variant == "hard":
                final = self.sparsities[i]
                m.keep_fraction = 1.0 - (self.initial_sparsity + (final - self.initial_sparsity) * progress)
            else:
                m.threshold = self.threshold * progress
        frozen = self.freeze_after_ramp and progress >= 1.0
        for m in self.modules:
            m.freeze(frozen)
        if self.l1 is not None:  # frozen masks: the scores must not move (a resume recomputes masks from them)
            self.l1.weight = 0.0 if frozen else self.l1_weight * progress

    def score_parameters(self) -> list[nn.Parameter]:
        return [m.scores for m in self.modules]


@dataclass(frozen=True)
class MovementFields(MethodConfig):
    """What every movement-pruning method sets: variant, target or threshold, score learning rate, schedule."""

    variant: Variant = "hard"
    sparsity: float | None = 0.9  # hard: the target; soft: must be null (the sparsity follows from l1_weight)
    threshold: float = 0.1  # soft: final tau on sigmoid(score)
    l1_weight: float = 5.0  # soft: final weight of mean(sigmoid(score)) in the loss; sets the sparsity, tune it
    score_learning_rate: float = 1e-2
    # Fix the masks once the ramp is complete, so the cool-down fine-tunes the weights under one mask
    # (as NNCF's movement sparsity does). Sanh et al. let the scores move to the end, which with a
    # short budget keeps swapping kept weights in and out (see BENCHMARKS.md, movement pruning).
    freeze_mask_after_ramp: bool = False
    schedule: CubicSchedule = CubicSchedule()
    train: TrainConfig = TrainConfig(learning_rate=5e-5, epochs=1.0)

    def validate(self) -> None:
        if self.variant == "hard":
            if self.sparsity is None:
                raise ConfigError("variant: hard needs a target sparsity in [0, 1)")
            check_range("sparsity", self.sparsity, 0, 1, high_inclusive=False)
        elif self.sparsity is not None:
            raise ConfigError("variant: soft takes no sparsity target (it follows from threshold and l1_weight); "
                              "set sparsity: null, or use variant: hard for an exact target")
        check_range("threshold", self.threshold, 0, 1, low_inclusive=False, high_inclusive=False)
        check_range("l1_weight", self.l1_weight, 0, None)
        check_range("score_learning_rate", self.score_learning_rate, 0, None, low_inclusive=False)
        self.schedule.validate()
        self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "movement pruning")
        return model


BlockOf = Callable[[nn.Module, LayerView, str], tuple[int, int]]


def single_weights(linear: nn.Module, view: LayerView, role: str) -> tuple[int, int]:
    return 1, 1


def movement_pruner(bundle: ModelBundle, cfg: MovementFields, block_of: BlockOf = single_weights, roles: tuple[str, ...] | None = None,
                    sparsity_of: Callable[[str], float | None] | None = None) -> tuple[MovementPruner, list[LossTerm]]:
    """Wrap the encoder linears of ``roles`` in :class:`MovementLinear` (blocks from ``block_of``); return the
    pruner and its extra loss terms; ``sparsity_of(role)`` overrides the hard target per role.
    """
    wrapped: list[tuple[str, MovementLinear]] = []

    def make(linear, view, role):
        module = MovementLinear(linear, block_of(linear, view, role), cfg.variant)
        wrapped.append((role, module))
        return module

    modules = wrap_linears(bundle.model, make, roles)
    sparsities = None
    if cfg.variant == "hard":
        sparsities = [sparsity_of(role) if sparsity_of else cfg.sparsity for role, _ in wrapped]
    l1 = ScoreL1(modules) if cfg.variant == "soft" else None
    pruner = MovementPruner(modules, cfg.variant, sparsities=sparsities, initial_sparsity=cfg.schedule.initial_sparsity,
                            threshold=cfg.threshold, l1=l1, l1_weight=cfg.l1_weight,
                            freeze_after_ramp=cfg.freeze_mask_after_ramp)
    return pruner, [l1] if l1 is not None else []


def train_movement(bundle: ModelBundle, cfg: MovementFields, ctx: StepContext, block_of: BlockOf = single_weights,
                   roles: tuple[str, ...] | None = None, sparsity_of: Callable[[str], float | None] | None = None,
                   name: str = "movement") -> None:
    """Wrap, train with the schedule, and leave the wrappers at their final masks (not yet baked)."""
    pruner, terms = movement_pruner(bundle, cfg, block_of, roles, sparsity_of)
    target = f"{cfg.sparsity:.0%}" if cfg.variant == "hard" else f"tau {cfg.threshold}"
    train_pruned(bundle, ctx, cfg.train, extra_terms=terms, name=name,
                 callbacks=[GradualPruning(pruner, cfg.schedule, cfg.score_learning_rate)],
                 description=f"{name} pruning ({cfg.variant}, {target})")
    pruner.update(1.0)  # the final masks, whichever checkpoint the loop kept
