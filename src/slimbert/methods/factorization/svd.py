"""``method: svd``: low-rank factorization of the encoder linears (survey section 3.4), plain or Fisher-weighted.

Each targeted ``nn.Linear`` W (out, in) becomes two plain linears ``B (out, r) @ A (r, in)`` from its
truncated SVD (:class:`~slimbert.methods.factorization.common.low_rank.LowRankLinear`), then the model
recovers by fine-tuning through the one training loop (with the step's ``distill:`` block, from the
recipe's input model, when given).

Ranks (exactly one of):

* ``rank``: the same rank for every targeted matrix; a rank at or above a matrix's break-even
  ``out*in/(out+in)`` would not save weights and is refused;
* ``keep_ratio`` with ``allocation: uniform``: every matrix keeps that fraction of its weights;
  with ``allocation: energy`` or ``sensitivity``: one budget of that fraction of all targeted weights,
  spent on the singular components that remove the most error per weight, by each matrix's share of
  its own energy (``energy``) or by the Fisher-weighted energy, the second-order estimate of the task
  loss change, comparable across matrices (``sensitivity``); matrices that would reach break-even stay
  dense, and the report says which;
* ``energy``: per matrix, the smallest rank holding that fraction of the squared singular values.

``weighting: fisher`` is FWSVD (Hsu et al., ICLR 2022): the reconstruction is weighted by the task
loss's empirical Fisher information, shared per row as the paper does: by default per *output* feature (a row
of PyTorch's (out, in) weight), ``fisher_axis: input`` per input feature (a column);
:mod:`slimbert.methods.factorization.common.fisher` gives the measurement that chose the default. Estimated
from ``fisher_samples`` training examples, one backward pass per batch of 8.

``targets`` names the linears to factor (default: all six roles). On ONNX Runtime, factoring q, k, v or the
attention output projection leaves that layer's attention unfused; ``targets: [ffn_in, ffn_out]`` keeps the
fusion (on MiniLM-L6 SST-2, FWSVD of the FFN at 50%: 1.45x at batch 32, -1.38 points; BENCHMARKS.md section 8).

Cost: one SVD per targeted matrix (milliseconds for MiniLM, ~1 s for BERT-base's 72), the Fisher pass
when used, and the recovery training (``train``; null: none).

Accuracy-gate fallback: keep 0.1 more of the weights (``keep_ratio``), 0.02 more energy (``energy``) or
double the rank, and run the step again, until the gate passes or nothing would be saved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from slimbert.config import MethodConfig, check_range
from slimbert.errors import ConfigError
from slimbert.methods.factorization.common.fisher import axis_weights, weight_fisher
from slimbert.methods.factorization.common.low_rank import factorize, weighted_svd
from slimbert.methods.factorization.common.rank_allocation import (
    Spectrum,
    allocate_global,
    check_rank,
    rank_for_energy,
    rank_for_ratio,
)
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import layer_views
from slimbert.steps.context import StepContext
from slimbert.steps.recovery import recover
from slimbert.steps.registry import register_method
from slimbert.steps.sampling import sample_batches
from slimbert.training.config import TrainConfig

Role = Literal["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
ROLES: tuple[str, ...] = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


def role_shapes(model: ModelShape, layer: int) -> dict[str, tuple[int, int]]:
    """(out, in) of each encoder linear of one layer, from the model's shape."""
    width = model.heads[layer] * model.head_size
    d, ffn = model.hidden, model.intermediate[layer]
    return {"query": (width, d), "key": (width, d), "value": (width, d), "attn_out": (d, width),
            "ffn_in": (ffn, d), "ffn_out": (d, ffn)}


@dataclass(frozen=True)
class SvdConfig(MethodConfig):
    """Truncated SVD (optionally Fisher-weighted: FWSVD) of the encoder linears, then recovery fine-tuning."""

    rank: int | None = None
    keep_ratio: float | None = None
    energy: float | None = None
    allocation: Literal["uniform", "energy", "sensitivity"] = "uniform"
    weighting: Literal["none", "fisher"] = "none"
    fisher_axis: Literal["output", "input"] = "output"  # which importances FWSVD shares (see common/fisher.py)
    fisher_samples: int = 256
    targets: tuple[Role, ...] = ROLES
    train: TrainConfig | None = TrainConfig(learning_rate=5e-5, epochs=1.0)  # recovery; null: none

    def validate(self) -> None:
        chosen = [n for n in ("rank", "keep_ratio", "energy") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ConfigError("set exactly one of rank, keep_ratio (a fraction of the weights) or energy (a fraction "
                              f"of the squared singular values); got {', '.join(chosen) or 'none'}")
        if self.keep_ratio is not None:
            check_range("keep_ratio", self.keep_ratio, 0, 1, low_inclusive=False, high_inclusive=False)
        if self.energy is not None:
            check_range("energy", self.energy, 0, 1, low_inclusive=False, high_inclusive=False)
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"rank must be >= 1, got {self.rank}")
        if self.allocation != "uniform" and self.keep_ratio is None:
            raise ConfigError(f"allocation: {self.allocation} spends a global budget: set keep_ratio (not rank or "
                              "energy)")
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"targets must name distinct encoder linears among {', '.join(ROLES)}")
        if self.fisher_samples < 1:
            raise ConfigError(f"fisher_samples must be >= 1, got {self.fisher_samples}")
        if self.train is not None:
            self.train.validate()

    @property
    def needs_fisher(self) -> bool:
        return self.weighting == "fisher" or self.allocation == "sensitivity"

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if not model.is_transformer:
            raise ConfigError(f"SVD factorizes Transformer encoder linears; a {model.model_type} model has none")
        if self.rank is not None:
            for layer in range(model.layers):
                for role, (out_f, in_f) in role_shapes(model, layer).items():
                    if role in self.targets:
                        check_rank(f"layer {layer} {role}", self.rank, out_f, in_f)
        return replace(model, factored_linears=True)


def fallback(cfg: SvdConfig) -> SvdConfig | None:
    """A milder config: keep 0.1 more weights, 0.02 more energy, or twice the rank (None when at the limit)."""
    if cfg.keep_ratio is not None:
        return replace(cfg, keep_ratio=round(cfg.keep_ratio + 0.1, 6)) if cfg.keep_ratio + 0.1 < 1 else None
    if cfg.energy is not None:
        return replace(cfg, energy=round(cfg.energy + 0.02, 6)) if cfg.energy + 0.02 < 1 else None
    return replace(cfg, rank=cfg.rank * 2)  # plan() refuses it once it passes break-even


def choose_ranks(cfg: SvdConfig, spectra: list[Spectrum]) -> dict[str, int | None]:
    """Rank per matrix name (None: leave dense), by the config's rule."""
    if cfg.allocation != "uniform":
        return allocate_global(spectra, cfg.keep_ratio, normalize=cfg.allocation == "energy")
    ranks: dict[str, int | None] = {}
    for s in spectra:
        if cfg.rank is not None:
            rank = cfg.rank
        elif cfg.keep_ratio is not None:
            rank = rank_for_ratio(s.out_features, s.in_features, cfg.keep_ratio)
        else:
            rank = rank_for_energy(s.energies, cfg.energy)
        check_rank(s.name, rank, s.out_features, s.in_features)
        ranks[s.name] = rank
    return ranks


@register_method("svd", SvdConfig, family="factorization", accepts_distill=True, fallback=fallback)
def apply_svd(bundle: ModelBundle, cfg: SvdConfig, ctx: StepContext) -> ModelBundle:
    """Low-rank SVD / Fisher-weighted SVD of the encoder linears into two dense linears, then recovery."""
    linears: dict[str, tuple] = {}
    for view in layer_views(bundle.model):
        for role in cfg.targets:
            module = view.module(role)
            if type(module) is not nn.Linear:
                raise ConfigError(f"svd: {view.module_path(role)} is a {type(module).__name__}, not a plain linear; "
                                  "put svd before quantization and before any other factorization")
            linears[view.module_path(role)] = (view, role, module)
    weights: dict[str, dict[str, torch.Tensor]] = {}  # name -> {"input_weights" | "output_weights": importances}
    if cfg.needs_fisher:
        batches = sample_batches(ctx, bundle.tokenizer, cfg.fisher_samples, batch_size=8)
        fisher = weight_fisher(bundle.model, {n: m for n, (_, _, m) in linears.items()}, batches,
                               ctx.task.is_regression)
        weights = {n: {f"{cfg.fisher_axis}_weights": axis_weights(f, cfg.fisher_axis)} for n, f in fisher.items()}
    factor_weights = {n: weights.get(n, {}) if cfg.weighting == "fisher" else {} for n in linears}
    spectra = []
    decompositions = {}  # the factors' own SVD, reused by factorize() when the spectrum came from it
    for name, (_, _, linear) in linears.items():
        # Allocation by sensitivity reads the Fisher-weighted spectrum even when the factors are unweighted.
        spectrum_weights = weights.get(name, {}) if cfg.allocation == "sensitivity" else factor_weights[name]
        decomposition = weighted_svd(linear.weight, **spectrum_weights)
        if spectrum_weights is factor_weights[name]:
            decompositions[name] = decomposition
        spectra.append(Spectrum(name, linear.out_features, linear.in_features, decomposition[1].double().pow(2).cpu()))
    ranks = choose_ranks(cfg, spectra)
    before = after = 0
    dense_left = []
    for name, (view, role, linear) in linears.items():
        before += linear.weight.numel()
        if ranks[name] is None:
            dense_left.append(name)
            after += linear.weight.numel()
            continue
        view.replace(role, factorize(linear, ranks[name], decomposition=decompositions.get(name),
                                     **factor_weights[name]))
        after += ranks[name] * (linear.in_features + linear.out_features)
    factored = len(linears) - len(dense_left)
    what = f"{'FWSVD' if cfg.weighting == 'fisher' else 'SVD'}: {factored} of {len(linears)} linears factored"
    labels = [f"{view.index}.{role}:{ranks[n] if ranks[n] is not None else 'dense'}"
              for n, (view, role, _) in linears.items()]
    ctx.note(f"{what}; their weights {before:,} -> {after:,} ({after / before:.1%}); ranks (layer.role:rank) "
             + ", ".join(labels[:18]) + (" ..." if len(labels) > 18 else ""))
    if dense_left:
        ctx.note(f"left dense (a rank at break-even would not save weights): {', '.join(dense_left)}")
    recover(bundle, ctx, cfg.train, "svd", f"recovery after {what}")
    ctx.claim("size", "disk", True, f"{what}: the factors hold {after / before:.0%} of their weights")
    ctx.claim("speed", "pytorch", True, "two smaller dense matrix products per factored linear")
    # ONNX Runtime's attention fusion matches MatMul -> Add for q, k, v and the output projection; a factored linear
    # is MatMul -> MatMul, so factoring any of them leaves that layer's attention unfused (measured: FWSVD of the
    # FFN only keeps all 6 fused, adding the output projection keeps none).
    ctx.claim("speed", "onnxruntime", True, "two MatMuls per factored linear; attention fusion needs plain q/k/v and "
              "output projections" if {"query", "key", "value", "attn_out"} & set(cfg.targets)
              else "two MatMuls per factored linear")
    return bundle
