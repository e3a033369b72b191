"""Symmetric int8 quantization math shared by the int8 methods.

Symmetric linear quantization (Q8BERT, Zafrir et al. 2019; Jacob et al. 2018): ``q = round(x / s)``
clamped to [-127, 127] with ``s = max|x| / 127``; dequantization is ``q * s``. Weights use one
scale per output channel (row); activations one scale per token (row of the flattened input).
"""

from __future__ import annotations

import torch

QMAX = 127


def symmetric_scale(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """max|x| / 127 over ``dim`` (kept as a size-1 dim), or over all of x when dim is None."""
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    return (amax / QMAX).clamp_min(1e-12)


def quantize_symmetric(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 codes of ``x`` for ``scale`` (broadcastable to x)."""
    return torch.clamp(torch.round(x / scale), -QMAX, QMAX).to(torch.int8)


def quantize_rows(weight: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes (out, in) and fp32 scales (out,) of a weight matrix (out, in).

    With ``per_channel=False`` all rows share one scale (still returned per row, for one code path).
    """
    w = weight.detach().float()
    scale = symmetric_scale(w, dim=1) if per_channel else symmetric_scale(w, None).expand(w.shape[0], 1)
    return quantize_symmetric(w, scale), scale.reshape(-1).contiguous()
