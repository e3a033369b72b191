"""Fake quantization for quantization-aware training: wrappers the one training loop trains.

The forward pass sees quantized weights and activations; the backward pass uses the
straight-through estimator (STE, Bengio et al. 2013): rounding is treated as the identity, so the
fp32 "latent" weights keep receiving gradients (Q8BERT, Zafrir et al. 2019; Q-BERT; TernaryBERT).

* Weights: a :class:`WeightQuantizer` maps the latent weight to its quantized value and can also
  return the integer codes and scales that the bake stores (uniform group-wise here; ternary in
  :mod:`slimbert.methods.quantization.ternary.quantizer`).
* Activations: symmetric 8-bit with a range kept as an exponential moving average of max|x| over
  training batches (:class:`EmaAbsMax`, Q8BERT's moving-average ranges). Values beyond the range
  are clipped, and get zero gradient (the clipped STE of Jacob et al. 2018).

The wrappers keep their structure for the whole training run (their state is parameters and
buffers), so checkpoints resume exactly; methods bake them into packed or int8 modules afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.methods.quantization.common.uniform import check_bits, dequantize_groups, qmax, quantize_groups


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def fake_quantize_activation(x: torch.Tensor, amax: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric b-bit fake quantization of x over [-amax, amax] with the clipped STE.

    Forward: ``round(clamp(x, -amax, amax) / s) * s`` with ``s = amax / qmax``. Backward: 1 inside
    the range, 0 where x was clipped.
    """
    amax = amax.clamp_min(1e-8)
    scale = amax / qmax(bits)
    clipped = torch.maximum(torch.minimum(x, amax), -amax)
    return round_ste(clipped / scale) * scale


class EmaAbsMax(nn.Module):
    """Moving average of max|x| over training batches (Q8BERT's activation range).

    ``amax <- momentum * amax + (1 - momentum) * max|x|`` in training mode (the first batch sets
    it); evaluation uses the stored value. Buffers: ``amax`` (), ``updates`` ().
    """

    def __init__(self, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("amax", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = x.detach().abs().amax().float()
        if self.training:
            with torch.no_grad():
                if int(self.updates) == 0:
                    self.amax.copy_(current)
                else:
                    self.amax.mul_(self.momentum).add_((1 - self.momentum) * current)
                self.updates.add_(1)
        elif int(self.updates) == 0:
            return current  # never trained (e.g. evaluated before the first step): this batch's range
        return self.amax


class WeightQuantizer(nn.Module):
    """Maps a latent weight (R, C) to its quantized value, with the STE in the backward pass.

    Scales are shared by blocks of ``row_block`` rows and ``col_block`` columns (None: the whole
    dimension; see :mod:`~slimbert.methods.quantization.common.uniform`).
    """

    bits: int
    row_block: int | None = None
    col_block: int | None = None

    def quantize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed integer codes (R, C) int8 and per-group scales (Gr, Gc): w ~ codes * scale."""
        raise NotImplementedError

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        codes, scales = self.quantize(w)
        return w + (dequantize_groups(codes, scales, self.row_block, self.col_block).to(w.dtype) - w).detach()


class UniformWeightQuantizer(WeightQuantizer):
    """Symmetric uniform b-bit weights with one max-based scale per group (Q8BERT, Q-BERT)."""

    def __init__(self, bits: int, row_block: int | None = None, col_block: int | None = None):
        super().__init__()
        check_bits(bits)
        self.bits, self.row_block, self.col_block = bits, row_block, col_block

    def quantize(self, w):
        return quantize_groups(w.detach().float(), self.bits, self.row_block, self.col_block)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, blocks={self.row_block}x{self.col_block}"


class FakeQuantLinear(nn.Module):
    """Training wrapper of an ``nn.Linear``: fake-quantized weight and (optionally) input.

    ``linear.weight`` is the latent fp32 weight the optimizer updates; ``act_range`` (None when
    activations stay fp32) tracks the input range. In eval mode the weights do not change, so
    the quantized weight is computed once and reused until the wrapper goes back to training.
    """

    def __init__(self, linear: nn.Linear, weight_quantizer: WeightQuantizer, act_bits: int | None = 8,
                 momentum: float = 0.9):
        super().__init__()
        self.linear = linear
        self.weight_quantizer = weight_quantizer
        self.act_bits = act_bits
        self.act_range = EmaAbsMax(momentum) if act_bits else None
        self._eval_weight: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "FakeQuantLinear":
        self._eval_weight = None
        return super().train(mode)

    def quantized_weight(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self.weight_quantizer(self.linear.weight)
        if self._eval_weight is None:
            self._eval_weight = self.weight_quantizer(self.linear.weight)
        return self._eval_weight

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    @property
    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_range is not None:
            x = fake_quantize_activation(x, self.act_range(x), self.act_bits)
        return F.linear(x, self.quantized_weight(), self.linear.bias)


class FakeQuantEmbedding(nn.Module):
    """Training wrapper of an ``nn.Embedding`` whose table is fake-quantized with one scale per row.

    Row-wise groups make a row's quantization independent of the other rows, so only the
    looked-up rows are quantized (not the whole 30k-row table at every step).
    """

    def __init__(self, embedding: nn.Embedding, weight_quantizer: WeightQuantizer):
        super().__init__()
        if weight_quantizer.row_block != 1 or weight_quantizer.col_block is not None:
            raise ValueError("embedding quantizers must use one scale per row (row_block=1, col_block=None)")
        if getattr(weight_quantizer, "mode", None) == "lat":
            raise ValueError("loss-aware ternarization is not supported for embeddings; use TWN")
        self.embedding = embedding
        self.weight_quantizer = weight_quantizer

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.embedding.weight, self.embedding.padding_idx)  # (..., d)
        return self.weight_quantizer(rows.reshape(-1, rows.shape[-1])).reshape(rows.shape)
