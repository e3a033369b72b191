"""Fisher information of linear weights, summed to one importance per input feature (FWSVD's weighting).

Hsu et al. (ICLR 2022, "Language model compression with weighted low-rank factorization") estimate the
diagonal empirical Fisher of each weight, ``F_ij = sum over batches of (dL/dW_ij)^2``, and, to keep the
weighted low-rank problem solvable by one SVD, share one importance per *row* of the weight matrix:
``I_row = sum over the row of F``. They write a layer as ``y = x W`` with ``W`` of shape (inputs, outputs)
(their equations, and their implementation, which factorizes the transposed PyTorch weight), so a row
of their ``W`` gathers every weight reading one *input feature*. In PyTorch's ``nn.Linear`` layout
``W (out, in)`` that is one importance per *column*: ``s_j = sqrt(sum_i F_ij)``, and the factorization
minimises ``|| (W - B A) diag(s) ||_F``. Weighting input features (not outputs) is what makes the
truncation keep the directions of the input space the task loss is sensitive to.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from slimbert.training.losses import TaskLoss


def input_feature_fisher(model: nn.Module, linears: dict[str, nn.Linear], batches: Sequence[dict[str, torch.Tensor]],
                         regression: bool) -> dict[str, torch.Tensor]:
    """Per linear (by name): ``sum_i F_ij`` (in,), the empirical Fisher of its weight summed over outputs.

    One backward pass per batch of task data; dropout off; only the named weights get gradients (the
    model's ``requires_grad`` flags and mode are restored).
    """
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for linear in linears.values():
        linear.weight.requires_grad_(True)
    totals = {name: torch.zeros(linear.in_features) for name, linear in linears.items()}
    device = next(model.parameters()).device
    loss_fn = TaskLoss(regression)
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            loss = loss_fn(batch, model(**inputs), model)
            grads = torch.autograd.grad(loss, [linear.weight for linear in linears.values()])
            for name, grad in zip(linears, grads):
                totals[name] += grad.detach().float().pow(2).sum(dim=0).cpu()  # (out, in) -> (in,)
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return totals


def column_weights(fisher_sums: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """``s_j = sqrt(sum_i F_ij)`` (in,), floored at ``floor * max(s)``: an input feature the sample never
    exercised (zero gradient) would otherwise divide the factor by zero when the weighting is undone."""
    s = fisher_sums.clamp_min(0).sqrt()
    return s.clamp_min(float(s.max()) * floor if float(s.max()) > 0 else 1.0)
