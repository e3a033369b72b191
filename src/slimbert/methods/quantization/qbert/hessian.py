"""Hessian-aware sensitivity for mixed precision (Q-BERT, Shen et al. 2020; HAWQ, Dong et al. 2019).

The sensitivity of a block of weights (one encoder layer) to quantization is measured by the top
eigenvalue of the loss Hessian restricted to that block, found by power iteration on
Hessian-vector products: ``Hv = d/dw (g . v)`` with ``g = dL/dw`` kept in the autograd graph
(double backward), so the Hessian is never formed. Q-BERT computes it on several batches and
uses ``mean + std`` of the eigenvalues as the layer's sensitivity Omega.

Bits are then assigned under an average-bit budget: a second-order model of the loss increase
from quantizing layer i at b bits is ``Omega_i * ||dW||^2 ~ Omega_i * size_i * 4^-b`` (the
quantization noise variance scales as 4^-b), and a greedy pass spends the bit budget where it
buys the largest decrease per bit.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from slimbert.errors import ConfigError


def hessian_vector_product(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                           vector: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """H v for the Hessian of the loss whose gradients ``grads`` (built with create_graph=True) w.r.t. ``params``."""
    return list(torch.autograd.grad(grads, params, grad_outputs=vector, retain_graph=True))


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def _power_iteration(matvec, params: Sequence[torch.Tensor], iterations: int, tol: float, seed: int) -> float:
    """Dominant (largest-magnitude) eigenvalue of the symmetric operator ``matvec`` by power iteration."""
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    norm = math.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    eigenvalue = 0.0
    for i in range(iterations):
        hv = matvec(v)
        new = _dot(v, hv)  # Rayleigh quotient (v has unit norm)
        norm = math.sqrt(_dot(hv, hv))
        if norm == 0:
            return 0.0
        v = [x / norm for x in hv]
        if i and abs(new - eigenvalue) <= tol * abs(eigenvalue):
            return new
        eigenvalue = new
    return eigenvalue


def top_eigenvalue(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor], iterations: int = 20,
                   tol: float = 1e-3, seed: int = 0) -> float:
    """Largest (algebraic) eigenvalue of the Hessian block of ``params``, by power iteration.

    Power iteration finds the eigenvalue of largest magnitude, which for an indefinite Hessian
    may be a negative one; then a second run on the shifted operator ``H - lambda_1 I`` (whose
    eigenvalues are all >= 0) finds the top one. Each run stops when the Rayleigh quotient changes
    by less than ``tol`` (relative) or after ``iterations`` Hessian-vector products.
    """
    dominant = _power_iteration(lambda v: hessian_vector_product(grads, params, v), params, iterations, tol, seed)
    if dominant >= 0:
        return dominant

    def shifted(v):
        return [h - dominant * x for h, x in zip(hessian_vector_product(grads, params, v), v)]

    return _power_iteration(shifted, params, iterations, tol, seed + 1) + dominant


def sensitivity(eigenvalues: Sequence[float]) -> float:
    """Q-BERT's Omega: mean + standard deviation of a layer's top eigenvalues over batches."""
    t = torch.tensor(list(eigenvalues), dtype=torch.float64)
    return float(t.mean() + (t.std(unbiased=False) if len(t) > 1 else 0.0))


def assign_bits(sensitivities: dict[int, float], sizes: dict[int, int], choices: Sequence[int],
                average_bits: float) -> dict[int, int]:
    """Bits per layer with size-weighted mean <= ``average_bits``, most sensitive layers first.

    Starts every layer at the smallest choice, then repeatedly raises the layer (to its next
    choice) with the largest ``Omega * size * (4^-b - 4^-b') / cost`` that still fits the budget.
    """
    choices = sorted(set(choices))
    total = sum(sizes.values())
    budget = average_bits * total
    bits = {layer: choices[0] for layer in sizes}
    used = choices[0] * total
    if used > budget + 1e-9:
        raise ConfigError(f"average_bits={average_bits} is below the smallest bit choice {choices[0]}")
    while True:
        best, best_gain = None, -1.0
        for layer, b in bits.items():
            higher = [c for c in choices if c > b]
            if not higher:
                continue
            cost = (higher[0] - b) * sizes[layer]
            if used + cost > budget + 1e-9:
                continue
            gain = max(sensitivities[layer], 0.0) * sizes[layer] * (4.0 ** -b - 4.0 ** -higher[0]) / cost
            if gain > best_gain:
                best, best_gain = layer, gain
        if best is None:
            return bits
        nxt = min(c for c in choices if c > bits[best])
        used += (nxt - bits[best]) * sizes[best]
        bits[best] = nxt
