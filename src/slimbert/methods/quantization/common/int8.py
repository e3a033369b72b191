"""Symmetric int8 quantization shared by the int8 methods.

Symmetric linear quantization (Q8BERT, Zafrir et al. 2019; Jacob et al. 2018): ``q = round(x / s)``
clamped to [-127, 127] with ``s = max|x| / 127``; dequantization is ``q * s``. Weights use one
scale per output channel (row); activations one scale per token (row of the flattened input).
The b-bit generalisation lives in :mod:`slimbert.methods.quantization.common.uniform`.
"""

from __future__ import annotations

import torch

from slimbert.methods.quantization.common.uniform import qmax, quantize_symmetric, symmetric_scale

QMAX = qmax(8)

__all__ = ["QMAX", "quantize_rows", "quantize_symmetric", "symmetric_scale"]


def quantize_rows(weight: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes (out, in) and fp32 scales (out,) of a weight matrix (out, in).

    With ``per_channel=False`` all rows share one scale (still returned per row, for one code path).
    """
    w = weight.detach().float()
    scale = symmetric_scale(w, dim=1) if per_channel else symmetric_scale(w, None).expand(w.shape[0], 1)
    return quantize_symmetric(w, scale), scale.reshape(-1).contiguous()
