"""Int8 modules that really store int8 and really compute in int8 on the CPU.

``Int8DynamicLinear`` keeps int8 weights with per-channel fp32 scales and quantizes activations
per token at run time; the matrix product runs in int8 with int32 accumulation
(``torch._int_mm``, a core PyTorch op, not the deprecated ``torch.ao.quantization`` API).
``Int8StaticLinear`` has the same weights but a fixed activation scale and zero point, found by
calibration (static post-training quantization) or learned during training (Q8BERT's moving
averages); it computes what ONNX Runtime's QDQ graph computes.
``Int8Embedding`` keeps int8 rows with one scale per row and dequantizes only the looked-up rows.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.methods.quantization.common.int8 import quantize_rows, symmetric_scale

UINT8_MIDPOINT = 128  # uint8 activation codes are shifted by this into int8 for torch._int_mm
from slimbert.models.module_kinds import register_module_kind


@register_module_kind
class Int8DynamicLinear(nn.Module):
    computes_int8 = True  # its products run on int8 kernels (for the compute floor)
    """``y = (q(x) @ W_q^T) * s_x * s_w + b``.

    Buffers: ``weight_int8`` (out, in) int8, ``weight_scale`` (out,) fp32, ``bias`` (out,) fp32.
    Input x: (..., in) float; output (..., out) in x's dtype.
    """

    kind: ClassVar[str] = "int8_dynamic_linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear, per_channel: bool = True) -> "Int8DynamicLinear":
        q = cls(linear.in_features, linear.out_features, linear.bias is not None)
        codes, scales = quantize_rows(linear.weight, per_channel)
        q.weight_int8.copy_(codes)
        q.weight_scale.copy_(scales)
        if linear.bias is not None:
            q.bias.copy_(linear.bias.detach().float())
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()  # (M, in)
        x_scale = symmetric_scale(x2, dim=1)  # (M, 1): one scale per token
        # |x / scale| <= 127 by construction, so rounding needs no clamp. In-place element-wise work
        # matters here: at batch 32 x 128 tokens the rescaling passes cost more than the int8 product.
        x_q = (x2 * x_scale.reciprocal()).round_().to(torch.int8)  # (M, in)
        acc = torch._int_mm(x_q, self.weight_int8.t())  # (M, out) int32
        y = acc.to(torch.float32).mul_(x_scale).mul_(self.weight_scale)  # (M, out)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    # -- savable module kind
    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}

    @classmethod
    def from_spec(cls, spec: dict) -> "Int8DynamicLinear":
        return cls(spec["in_features"], spec["out_features"], spec["bias"])

    def to_float(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.dequantized_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def logical_params(self) -> int:
        return self.weight_int8.numel() + (self.bias.numel() if self.bias is not None else 0)

    def logical_nonzero(self) -> int:
        return int((self.weight_int8 != 0).sum()) + (int((self.bias != 0).sum()) if self.bias is not None else 0)

    def flops_per_token(self) -> int:
        return 2 * self.in_features * self.out_features

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights + dynamic int8 activations"


@register_module_kind
class Int8StaticLinear(Int8DynamicLinear):
    """Int8 weights and activations with a *fixed* activation quantizer (static int8).

    Activations use ONNX Runtime's uint8 grid: ``x_q = clamp(round(x / s_x) + z, 0, 255)``
    (round half to even, as ``QuantizeLinear``). Shifting by 128 puts the codes in int8 for
    ``torch._int_mm``; the zero point is folded into the int32 accumulator with the weight row
    sums: ``sum_k (x_q - z) w_k = sum_k (x_q - 128) w_k - (z - 128) sum_k w_k``.
    A symmetric range (Q8BERT) is the special case ``z = 128``.

    Buffers: those of :class:`Int8DynamicLinear` plus ``input_scale`` () fp32 and
    ``input_zero_point`` () int32.
    """

    kind: ClassVar[str] = "int8_static_linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("input_zero_point", torch.tensor(UINT8_MIDPOINT, dtype=torch.int32))
        self._row_sums: torch.Tensor | None = None  # derived from the weights, not stored

    @classmethod
    def from_float_static(cls, linear: nn.Linear, input_scale: float, input_zero_point: int,
                          per_channel: bool = True) -> "Int8StaticLinear":
        q = cls.from_float(linear, per_channel)
        q.input_scale.fill_(input_scale)
        q.input_zero_point.fill_(input_zero_point)
        return q

    def _load_from_state_dict(self, *args, **kwargs):
        self._row_sums = None
        super()._load_from_state_dict(*args, **kwargs)

    def row_sums(self) -> torch.Tensor:
        """sum_k W_q[o, k] per output row: (out,) int32."""
        if self._row_sums is None or self._row_sums.device != self.weight_int8.device:
            self._row_sums = self.weight_int8.sum(dim=1, dtype=torch.int32)
        return self._row_sums

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()  # (M, in)
        zero_point = int(self.input_zero_point)
        codes = (x2 / self.input_scale).round_().add_(zero_point).clamp_(0, 255)  # (M, in) uint8 grid
        x_q = codes.sub_(UINT8_MIDPOINT).to(torch.int8)
        acc = torch._int_mm(x_q, self.weight_int8.t())  # (M, out) int32
        if zero_point != UINT8_MIDPOINT:
            acc = acc - (zero_point - UINT8_MIDPOINT) * self.row_sums()
        y = acc.to(torch.float32).mul_(self.input_scale * self.weight_scale)  # (M, out)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 weights + static int8 "
                f"activations (scale={float(self.input_scale):.3g}, zero_point={int(self.input_zero_point)})")


@register_module_kind
class Int8Embedding(nn.Module):
    """Embedding table stored as int8 rows (V, d) with one fp32 scale per row (V,)."""

    kind: ClassVar[str] = "int8_embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> "Int8Embedding":
        q = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx)
        codes, scales = quantize_rows(embedding.weight, per_channel=True)
        q.weight_int8.copy_(codes)
        q.weight_scale.copy_(scales)
        return q

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight_int8)  # (..., d) int8
        return rows.float() * self.weight_scale[ids].unsqueeze(-1)

    @property
    def weight(self) -> torch.Tensor:
        """Dequantized table (V, d); for code that reads ``embeddings.weight`` (e.g. resizing)."""
        return self.weight_int8.float() * self.weight_scale[:, None]

    def spec(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "padding_idx": self.padding_idx}

    @classmethod
    def from_spec(cls, spec: dict) -> "Int8Embedding":
        return cls(spec["num_embeddings"], spec["embedding_dim"], spec["padding_idx"])

    def to_float(self) -> nn.Embedding:
        emb = nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx)
        with torch.no_grad():
            emb.weight.copy_(self.weight)
        return emb

    def logical_params(self) -> int:
        return self.weight_int8.numel()

    def logical_nonzero(self) -> int:
        return int((self.weight_int8 != 0).sum())
