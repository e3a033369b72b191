"""GOBO's weight encoding: Gaussian outliers kept exact, the rest clustered (Zadeh et al. 2020).

For one matrix w (any shape, treated as a flat vector of n weights):

1. Fit a Gaussian (mean mu, standard deviation sigma) to all weights; the *outliers* are the
   weights with ``|w - mu| > k * sigma`` (a small fraction, typically well under 1% of BERT's
   weights). They are kept in fp32 with their positions.
2. The other weights are represented by 2^b centroids (default 3 bits: 8 values). Centroids
   start evenly spaced over the range of those weights and are refined iteratively: assign each
   weight to its nearest centroid, move every centroid to the mean of its weights, and stop when
   the total absolute error (L1, GOBO's criterion) no longer decreases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimbert.methods.quantization.common.uniform import check_bits

DEFAULT_OUTLIER_STD = 3.0
MAX_ITERATIONS = 100
CONVERGENCE = 1e-4  # relative L1 improvement below which the refinement stops


@dataclass
class GoboCode:
    """A GOBO-encoded matrix: codebook indices (shape of w), the codebook (2^b,), fp32 outliers."""

    indices: torch.Tensor  # int64, values in [0, 2^b)
    codebook: torch.Tensor  # (2^b,) fp32, ascending
    outlier_index: torch.Tensor  # (K,) int64 flat positions
    outlier_value: torch.Tensor  # (K,) fp32
    iterations: int

    def decode(self) -> torch.Tensor:
        dense = self.codebook[self.indices].clone()
        dense.view(-1)[self.outlier_index] = self.outlier_value
        return dense


def nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the ascending ``centroids`` for each value."""
    boundaries = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values, boundaries)


def gobo_encode(w: torch.Tensor, bits: int = 3, outlier_std: float = DEFAULT_OUTLIER_STD,
                max_iterations: int = MAX_ITERATIONS) -> GoboCode:
    """Encode ``w``: outliers beyond ``outlier_std`` standard deviations, the rest on 2^bits centroids."""
    check_bits(bits)
    flat = w.detach().float().reshape(-1)
    mu, sigma = flat.mean(), flat.std()
    is_outlier = (flat - mu).abs() > outlier_std * sigma
    inliers = flat[~is_outlier]
    if inliers.numel() == 0:  # degenerate (constant) matrix: everything is exact anyway
        inliers = flat
        is_outlier = torch.zeros_like(is_outlier)
    centroids = torch.linspace(float(inliers.min()), float(inliers.max()), 2 ** bits)
    assign = nearest(inliers, centroids)
    error = (inliers - centroids[assign]).abs().sum()
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        sums = torch.bincount(assign, weights=inliers, minlength=centroids.numel()).float()
        counts = torch.bincount(assign, minlength=centroids.numel()).float()
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)  # empty clusters stay put
        moved_assign = nearest(inliers, moved)
        moved_error = (inliers - moved[moved_assign]).abs().sum()
        if moved_error >= error * (1 - CONVERGENCE):
            if moved_error < error:
                centroids, assign, error = moved, moved_assign, moved_error
            break
        centroids, assign, error = moved, moved_assign, moved_error
    indices = nearest(flat, centroids)
    outlier_index = is_outlier.nonzero().reshape(-1)
    return GoboCode(indices.reshape(w.shape), centroids, outlier_index, flat[outlier_index], iterations)
