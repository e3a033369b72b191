"""Fisher information of linear weights, summed to one importance per row or per column (FWSVD's weighting).

Hsu et al. (ICLR 2022, "Language model compression with weighted low-rank factorization") estimate the
diagonal empirical Fisher of each weight, ``F_ij = sum over batches of (dL/dW_ij)^2``, and, to keep the
weighted low-rank problem solvable by one SVD, let the weights of one *row* share one importance, the row's
summed Fisher. Which dimension is a row depends on how the layer is written, and the two readings differ in
PyTorch's ``nn.Linear`` layout ``W (out, in)``:

* ``axis="output"`` (the default): a row of PyTorch's weight, the weights producing one *output* feature:
  ``r_i = sqrt(sum_j F_ij)``, minimising ``|| diag(r) (W - B A) ||_F``;
* ``axis="input"``: a column, the weights reading one *input* feature (a row of ``W`` written ``y = x W``):
  ``c_j = sqrt(sum_i F_ij)``, minimising ``|| (W - B A) diag(c) ||_F``.

Measured on the MiniLM-L6 SST-2 teacher, every encoder linear factored, no recovery
(``benchmarks/probes/fwsvd_orientation.py``): at half the weights plain SVD 84.29, output rows 85.32, input
columns 84.40; at a quarter, 73.39 / 75.46 / 69.15. Only the output reading reproduces the paper's finding
(FWSVD beats SVD before fine-tuning), so it is the default; the input reading stays available.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from slimbert.training.losses import TaskLoss


def weight_fisher(model: nn.Module, linears: dict[str, nn.Linear], batches: Sequence[dict[str, torch.Tensor]],
                  regression: bool) -> dict[str, torch.Tensor]:
    """Per linear (by name): the empirical Fisher of its weight, ``F (out, in) = sum over batches (dL/dW)^2``.

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
    totals = {name: torch.zeros_like(linear.weight, dtype=torch.float32, device="cpu")
              for name, linear in linears.items()}
    device = next(model.parameters()).device
    loss_fn = TaskLoss(regression)
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            loss = loss_fn(batch, model(**inputs), model)
            grads = torch.autograd.grad(loss, [linear.weight for linear in linears.values()])
            for name, grad in zip(linears, grads):
                totals[name] += grad.detach().float().pow(2).cpu()  # (out, in)
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return totals


def axis_weights(fisher: torch.Tensor, axis: str, floor: float = 1e-3) -> torch.Tensor:
    """FWSVD's importances from a weight's Fisher (out, in): ``sqrt`` of its sum per output row ("output", (out,))
    or per input column ("input", (in,)), floored at ``floor * max``: a feature the sample never exercised (zero
    gradient) would otherwise divide the factor by zero when the weighting is undone."""
    if axis not in ("output", "input"):
        raise ValueError(f"axis must be 'output' or 'input', got {axis!r}")
    s = fisher.sum(dim=1 if axis == "output" else 0).clamp_min(0).sqrt()
    return s.clamp_min(float(s.max()) * floor if float(s.max()) > 0 else 1.0)
