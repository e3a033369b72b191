"""Ternarization of weight matrices: w ~ alpha * b with b in {-1, 0, +1} (TernaryBERT, Zhang et al. 2020).

Two ways of choosing the threshold and the scale alpha of each group of a matrix (R, C):

* **TWN** (ternary weight networks, Li & Liu 2016): ``Delta = 0.7 * mean|w|``,
  ``b = sign(w) * [|w| > Delta]``, ``alpha = mean of |w| over the kept weights``; this minimises
  ``||w - alpha b||^2`` under the approximation that w is Gaussian-like.
* **LAT** (loss-aware ternarization, Hou & Kwok 2018): minimise the second-order approximation of
  the loss ``(w - alpha b)^T D (w - alpha b)`` with D the diagonal curvature estimate that Adam
  keeps (``sqrt(v) + eps``, v the moving average of squared gradients). Alternating the two
  closed-form steps ``alpha = sum(d |w| |b|) / sum(d |b|)`` and ``b = sign(w) * [|w| > alpha / 2]``
  from the TWN solution reaches a fixed point in a few iterations.

Codes use the symmetric 2-bit grid of :mod:`~slimbert.methods.quantization.common.uniform` (qmax = 1),
so ternary matrices pack at 2 bits with one scale per group.
"""

from __future__ import annotations

import torch

from slimbert.methods.quantization.common.uniform import expand_groups, group_reduce

TWN_THRESHOLD = 0.7
LAT_ITERATIONS = 10  # alternations at most; they usually reach a fixed point sooner


def _ternary_codes(w: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """sign(w) where |w| > threshold (broadcast per element), else 0: int8 (R, C)."""
    return (torch.sign(w) * (w.abs() > threshold)).to(torch.int8)


def ternarize_twn(w: torch.Tensor, row_block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """TWN codes (R, C) int8 in {-1, 0, 1} and scales alpha (Gr, 1) of ``w`` (R, C), per block of rows."""
    w = w.detach().float()
    rows, cols = w.shape
    magnitude = w.abs()
    delta = TWN_THRESHOLD * group_reduce(magnitude, row_block, None, "mean")  # (Gr, 1)
    codes = _ternary_codes(w, expand_groups(delta, row_block, None, rows, cols))
    kept = codes.abs().float()
    alpha = group_reduce(magnitude * kept, row_block, None, "sum") / group_reduce(kept, row_block, None, "sum").clamp_min(1)
    return codes, alpha.clamp_min(1e-12)


def ternarize_lat(w: torch.Tensor, curvature: torch.Tensor, row_block: int | None = None,
                  iterations: int = LAT_ITERATIONS, initial_alpha: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss-aware ternary codes and scales of ``w`` (R, C) with diagonal ``curvature`` d (R, C) > 0.

    ``initial_alpha`` (Gr, 1) warm-starts the alternation (during training the previous step's
    alpha is nearly a fixed point already); by default it starts from the TWN solution.
    """
    w = w.detach().float()
    rows, cols = w.shape
    magnitude = w.abs()
    if initial_alpha is None:
        codes, alpha = ternarize_twn(w, row_block)
    else:
        alpha = initial_alpha
        codes = _ternary_codes(w, expand_groups(alpha / 2, row_block, None, rows, cols))
    for _ in range(iterations):
        kept = codes.abs().float()
        num = group_reduce(curvature * magnitude * kept, row_block, None, "sum")
        den = group_reduce(curvature * kept, row_block, None, "sum")
        alpha = torch.where(den > 0, num / den.clamp_min(1e-30), alpha).clamp_min(1e-12)
        new_codes = _ternary_codes(w, expand_groups(alpha / 2, row_block, None, rows, cols))
        if torch.equal(new_codes, codes):  # a fixed point of both steps
            break
        codes = new_codes
    return codes, alpha
