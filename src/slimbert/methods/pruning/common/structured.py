"""Shared machinery of structured pruning: importance from gate gradients, choosing the least important
units across layers, and the iterative prune -> fine-tune loop (Michel et al., 2019).

A *unit* is an attention head or an FFN neuron. Scores are per layer, in the layer's current unit
numbering; units are removed physically (:mod:`slimbert.models.surgery`) between training runs, so
the module structure never changes while the one training loop runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from slimbert.config import MethodConfig, check_range
from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.fine_tuning import train_pruned
from slimbert.methods.pruning.common.unit_gates import InputGates, head_gates, neuron_gates
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import layer_views
from slimbert.models.surgery import prune_ffn_neurons, prune_heads
from slimbert.steps.context import StepContext
from slimbert.training.config import TrainConfig
from slimbert.training.losses import TaskLoss


@dataclass(frozen=True)
class IterativePruningConfig(MethodConfig):
    """Fields shared by iterative structured pruning methods (heads, FFN neurons)."""

    fraction: float = 0.5  # of all units (heads or neurons) in the model
    rounds: int = 2
    importance_samples: int = 512  # training examples the importance is summed over
    train: TrainConfig | None = TrainConfig(learning_rate=5e-5, epochs=1.0)  # after each round; null: no training

    def validate(self) -> None:
        check_range("fraction", self.fraction, 0, 1, high_inclusive=False)
        if self.rounds < 1 or self.importance_samples < 1:
            raise ConfigError(f"rounds and importance_samples must be >= 1, got {self.rounds} and "
                              f"{self.importance_samples}")
        if self.train is not None:
            self.train.validate()


@dataclass(frozen=True)
class UnitKind:
    """Heads or neurons: how to count them per layer, gate them, and remove them."""

    name: str
    sizes: Callable[[nn.Module], list[int]]
    gates: Callable[[nn.Module, bool], InputGates]
    remove: Callable[[nn.Module, Mapping[int, Sequence[int]]], nn.Module]


HEADS = UnitKind("head", lambda m: [v.num_heads for v in layer_views(m)], head_gates, prune_heads)
NEURONS = UnitKind("neuron", lambda m: [v.intermediate_size for v in layer_views(m)], neuron_gates, prune_ffn_neurons)


def gate_importance(model: nn.Module, kind: UnitKind, batches: Sequence[dict[str, torch.Tensor]],
                    regression: bool) -> list[torch.Tensor]:
    """Per layer, sum over batches of |dL/dg| for each unit's gate g (evaluated at g = 1).

    For heads this is Michel et al.'s importance I_h = E_x |dL(x)/dxi_h|; for neurons it is the
    first-order Taylor score |sum_tokens a * dL/da| (gradient x activation, Molchanov et al. 2017).
    Dropout is off and the model's parameters get no gradients.
    """
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    loss_fn = TaskLoss(regression)
    totals = [torch.zeros(n) for n in kind.sizes(model)]
    device = next(model.parameters()).device
    try:
        with kind.gates(model, True) as gates:
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                loss = loss_fn(batch, model(**inputs), model)
                loss.backward()
                totals = [t + g.abs().cpu() for t, g in zip(totals, gates.grads())]
                gates.zero_grad()
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return totals


def normalize_per_layer(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Divide each layer's scores by their L2 norm (Michel et al.), so layers compare on one scale."""
    return [s / s.norm().clamp_min(1e-12) for s in scores]


def select_lowest(scores: Sequence[torch.Tensor], count: int, min_keep: int = 1) -> dict[int, list[int]]:
    """The ``count`` lowest-scoring units across layers, never leaving a layer below ``min_keep`` units.

    Returns ``{layer: [unit indices]}``; ties are broken by (layer, index) order.
    """
    candidates = sorted((float(s), layer, i) for layer, layer_scores in enumerate(scores)
                        for i, s in enumerate(layer_scores.tolist()))
    left = [len(s) for s in scores]
    chosen: dict[int, list[int]] = {}
    for _, layer, i in candidates:
        if count == 0:
            break
        if left[layer] > min_keep:
            chosen.setdefault(layer, []).append(i)
            left[layer] -= 1
            count -= 1
    if count:
        raise ConfigError(f"cannot remove {count} more units while keeping {min_keep} per layer")
    return {layer: sorted(units) for layer, units in chosen.items()}


def select_lowest_per_layer(scores: Sequence[torch.Tensor], count: int) -> dict[int, list[int]]:
    """The lowest units of each layer, ``count`` in all, shared out in proportion to the layers' sizes
    (largest remainders first), so every layer loses the same fraction."""
    sizes = [len(s) for s in scores]
    exact = [count * n / sum(sizes) for n in sizes]
    quota = [int(e) for e in exact]
    for layer in sorted(range(len(sizes)), key=lambda i: -(exact[i] - quota[i]))[:count - sum(quota)]:
        quota[layer] += 1
    return {layer: sorted(torch.argsort(s, stable=True)[:q].tolist()) for layer, (s, q) in enumerate(zip(scores, quota))
            if q}


def removal_target(unit: str, sizes: Sequence[int], fraction: float) -> int:
    """How many of the layers' units (``sizes`` per layer) ``fraction`` means, checked against keeping one per layer."""
    total = sum(sizes)
    target = round(fraction * total)
    if target > total - len(sizes):
        raise ConfigError(
            f"removing {fraction:.0%} of {total} {unit}s ({target}) would empty a layer: at most "
            f"{total - len(sizes)} can go while each of the {len(sizes)} layers keeps one; lower the fraction, "
            "or drop whole layers with method: drop-layers")
    return target


def prune_iteratively(bundle: ModelBundle, ctx: StepContext, kind: UnitKind, *, fraction: float, rounds: int,
                      scores: Callable[[ModelBundle], list[torch.Tensor]], train: TrainConfig | None,
                      name: str,
                      choose: Callable[[Sequence[torch.Tensor], int], dict[int, list[int]]] = select_lowest,
                      ) -> list[dict[int, list[int]]]:
    """Remove ``fraction`` of all units in ``rounds`` equal rounds, re-scoring (and fine-tuning) in between.

    ``choose(scores, count)`` picks the units of a round: across layers (:func:`select_lowest`) or the
    same share of every layer (:func:`select_lowest_per_layer`). Returns the removals of each round
    (in that round's numbering).
    """
    target = removal_target(kind.name, kind.sizes(bundle.model), fraction)
    removed, history = 0, []
    for r in range(1, rounds + 1):
        count = round(target * r / rounds) - removed
        removal = choose(scores(bundle), count) if count else {}
        if removal:
            kind.remove(bundle.model, removal)
        removed += count
        history.append(removal)
        ctx.note(f"{name} round {r}/{rounds}: removed {count} {kind.name}s; per layer now {kind.sizes(bundle.model)}")
        if train is not None:
            train_pruned(bundle, ctx, train, name=f"{name}-round{r}",
                         description=f"{name}: fine-tuning after round {r}/{rounds}")
    return history


def structured_claims(ctx: StepContext, what: str) -> None:
    """Physically removed structure is smaller and faster on every runtime (measured in the report)."""
    ctx.claim("size", "disk", True, f"{what} physically removed: smaller weight matrices")
    ctx.claim("speed", "pytorch", True, f"{what} physically removed: fewer FLOPs in dense kernels")
    ctx.claim("speed", "onnxruntime", True, f"{what} physically removed: fewer FLOPs in dense kernels")
