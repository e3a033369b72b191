"""Choosing ranks: per matrix (a fixed rank, a parameter ratio, an energy threshold) or under one global budget.

A matrix W (out, in) at rank r costs ``r * (out + in)`` weights; each singular component k costs
``out + in`` and removes ``sigma_k^2`` of squared reconstruction error (of the weighted matrix, for
FWSVD). The global allocation spends a budget of ``keep_ratio * sum(out * in)`` weights on the
components with the most error removed per weight, greedily; a matrix whose rank would reach the
break-even ``out * in / (out + in)`` is cheaper dense and is left dense (and reported as such).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slimbert.errors import ConfigError
from slimbert.methods.factorization.common.low_rank import break_even_rank


@dataclass(frozen=True)
class Spectrum:
    """One matrix's singular-value energies ``sigma_k^2`` (descending), for allocation."""

    name: str
    out_features: int
    in_features: int
    energies: torch.Tensor  # (min(out, in),)

    @property
    def dense_cost(self) -> int:
        return self.out_features * self.in_features

    @property
    def component_cost(self) -> int:
        return self.out_features + self.in_features


def check_rank(name: str, rank: int, out_features: int, in_features: int) -> None:
    """A per-matrix rank must be >= 1 and save weights (below break-even); else a :class:`ConfigError`."""
    limit = break_even_rank(out_features, in_features)
    if rank < 1:
        raise ConfigError(f"{name}: rank must be >= 1, got {rank}")
    if rank >= limit:
        raise ConfigError(
            f"{name}: rank {rank} would not save parameters: a {out_features} x {in_features} matrix breaks even at "
            f"rank {limit:.1f} (out*in/(out+in)); use a lower rank or keep_ratio, or allocation: energy|sensitivity, "
            "which leaves such matrices dense")


def rank_for_ratio(out_features: int, in_features: int, keep_ratio: float) -> int:
    """The rank keeping ``keep_ratio`` of the matrix's weights: ``floor(keep_ratio * out*in/(out+in))``, >= 1."""
    return max(1, math.floor(keep_ratio * break_even_rank(out_features, in_features) + 1e-9))


def rank_for_energy(energies: torch.Tensor, threshold: float) -> int:
    """The smallest rank whose components hold ``threshold`` of the squared singular values."""
    total = float(energies.sum())
    if total <= 0:
        return 1
    cumulative = torch.cumsum(energies.double(), 0) / total
    return int(torch.searchsorted(cumulative, torch.tensor(threshold - 1e-12, dtype=torch.float64)).item()) + 1


def allocate_global(spectra: list[Spectrum], keep_ratio: float, normalize: bool) -> dict[str, int | None]:
    """Ranks under one budget of ``keep_ratio * sum(out*in)`` weights; None marks a matrix left dense.

    ``normalize``: score components by their share of their own matrix's energy (allocation by energy);
    otherwise by absolute energy (with Fisher weighting: the second-order estimate of the loss change,
    comparable across matrices: allocation by sensitivity). Every factored matrix keeps rank >= 1.
    """
    budget = keep_ratio * sum(s.dense_cost for s in spectra)
    ranks: dict[str, int | None] = {s.name: 1 for s in spectra}
    used = sum(s.component_cost for s in spectra)
    by_name = {s.name: s for s in spectra}
    candidates = []
    for s in spectra:
        scale = float(s.energies.sum()) if normalize else 1.0
        scores = (s.energies.double() / max(scale, 1e-30) / s.component_cost).tolist()
        candidates += [(score, s.name, k) for k, score in enumerate(scores) if k >= 1]
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    for _, name, k in candidates:
        s = by_name[name]
        if ranks[name] is None or ranks[name] != k or used + s.component_cost > budget:
            continue
        ranks[name] = k + 1
        used += s.component_cost
        if (k + 1) >= break_even_rank(s.out_features, s.in_features):  # cheaper dense from here on
            used += s.dense_cost - (k + 1) * s.component_cost
            ranks[name] = None
    return ranks
