"""Low-bit weights stored packed, so that the saved file is as small as the bit width claims.

A :class:`PackedMatrix` holds a matrix (R, C) as

* ``codes``: b-bit codes, bit-packed into uint8 (:mod:`~slimbert.methods.quantization.common.packing`);
* either ``scales`` (Gr, Gc) fp32 of a uniform grid per group (value = signed code * scale, signed
  codes in [-2^(b-1), 2^(b-1) - 1] stored with an offset of 2^(b-1): Q-BERT, TernaryBERT and
  ONNX Runtime's 4-bit blocks), or a ``codebook`` (2^b,) fp32 (GOBO: value = codebook[code]);
* optional sparse outliers kept in fp32 (GOBO): ``outlier_index`` (K,) int32 flat positions and
  ``outlier_value`` (K,) fp32, which overwrite the decoded values at those positions.

No runtime here has kernels for 2/3/4-bit codes with these layouts, so the matrix is decoded to
fp32 once, on first use, and cached (not saved): the gain is on disk, not in speed.
:class:`PackedLinear` and :class:`PackedEmbedding` are the savable module kinds.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.methods.quantization.common.packing import pack_codes, packed_size, unpack_codes
from slimbert.methods.quantization.common.uniform import check_bits, dequantize_groups, num_groups
from slimbert.models.module_kinds import register_module_kind

Scheme = Literal["uniform", "codebook"]


def code_offset(bits: int) -> int:
    """What is added to a signed b-bit code to store it unsigned: 2^(b-1)."""
    return 2 ** (bits - 1)


class PackedMatrix(nn.Module):
    """Storage and decoding of one packed matrix; subclasses add what the matrix is used for."""

    def __init__(self, rows: int, cols: int, bits: int, scheme: Scheme = "uniform", row_block: int | None = None,
                 col_block: int | None = None, outliers: int = 0):
        super().__init__()
        check_bits(bits)
        if scheme not in ("uniform", "codebook"):
            raise ValueError(f"unknown packing scheme {scheme!r}; expected 'uniform' or 'codebook'")
        self.rows, self.cols, self.bits, self.scheme = rows, cols, bits, scheme
        self.row_block, self.col_block, self.outliers = row_block, col_block, outliers
        self.register_buffer("codes", torch.zeros(packed_size(rows * cols, bits), dtype=torch.uint8))
        if scheme == "uniform":
            self.register_buffer("scales", torch.ones(num_groups(rows, row_block), num_groups(cols, col_block)))
        else:
            self.register_buffer("codebook", torch.zeros(2 ** bits))
        self.register_buffer("outlier_index", torch.zeros(outliers, dtype=torch.int32))
        self.register_buffer("outlier_value", torch.zeros(outliers))
        self._dense: torch.Tensor | None = None  # decoded (R, C) fp32, rebuilt after loading

    # -- building
    def set_uniform(self, codes: torch.Tensor, scales: torch.Tensor) -> None:
        """Store signed codes (R, C) in [-2^(b-1), 2^(b-1) - 1] (or {-1, +1} at 1 bit) and scales (Gr, Gc)."""
        unsigned = (codes.long() + 1) // 2 if self.bits == 1 else codes.long() + code_offset(self.bits)
        self.codes.copy_(pack_codes(unsigned, self.bits))
        self.scales.copy_(scales.reshape(self.scales.shape).float())
        self._dense = None

    def set_codebook(self, indices: torch.Tensor, codebook: torch.Tensor, outlier_index: torch.Tensor,
                     outlier_value: torch.Tensor) -> None:
        """Store codebook indices (R, C), the codebook (2^b,) and fp32 outliers at flat positions."""
        self.codes.copy_(pack_codes(indices, self.bits))
        self.codebook.copy_(codebook.float())
        self.outlier_index.copy_(outlier_index.to(torch.int32))
        self.outlier_value.copy_(outlier_value.float())
        self._dense = None

    # -- decoding
    def _load_from_state_dict(self, *args, **kwargs):
        self._dense = None
        super()._load_from_state_dict(*args, **kwargs)

    def decode(self) -> torch.Tensor:
        """The matrix (R, C) fp32, decoded from the packed storage (not cached)."""
        unsigned = unpack_codes(self.codes.cpu(), self.bits, self.rows * self.cols).reshape(self.rows, self.cols)
        if self.scheme == "uniform":
            signed = unsigned * 2 - 1 if self.bits == 1 else unsigned - code_offset(self.bits)
            dense = dequantize_groups(signed, self.scales.cpu(), self.row_block, self.col_block)
        else:
            dense = self.codebook.cpu()[unsigned]
        if self.outliers:
            dense.view(-1)[self.outlier_index.cpu().long()] = self.outlier_value.cpu()
        return dense.to(self.codes.device)

    def dense(self) -> torch.Tensor:
        """The decoded matrix, cached after the first call (the cache is never saved)."""
        if self._dense is None or self._dense.device != self.codes.device:
            self._dense = self.decode()
        return self._dense

    # -- savable module kind
    def spec(self) -> dict:
        return {"rows": self.rows, "cols": self.cols, "bits": self.bits, "scheme": self.scheme,
                "row_block": self.row_block, "col_block": self.col_block, "outliers": self.outliers}

    def logical_nonzero(self) -> int:
        return int((self.dense() != 0).sum())

    def extra_repr(self) -> str:
        grid = f"{tuple(self.scales.shape)} scale groups" if self.scheme == "uniform" else "codebook"
        extra = f", {self.outliers} fp32 outliers" if self.outliers else ""
        return f"({self.rows}, {self.cols}) packed {self.bits}-bit, {grid}{extra}"


@register_module_kind
class PackedLinear(PackedMatrix):
    """A linear layer whose weight (out, in) is a :class:`PackedMatrix`; bias (out,) fp32."""

    kind: ClassVar[str] = "packed_linear"

    def __init__(self, in_features: int, out_features: int, bits: int, scheme: Scheme = "uniform",
                 row_block: int | None = None, col_block: int | None = None, outliers: int = 0, bias: bool = True):
        super().__init__(out_features, in_features, bits, scheme, row_block, col_block, outliers)
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def empty_like(cls, linear: nn.Module, bits: int, scheme: Scheme = "uniform", row_block: int | None = None,
                   col_block: int | None = None, outliers: int = 0) -> "PackedLinear":
        """An empty packed linear of ``linear``'s shape, with ``linear``'s bias copied."""
        packed = cls(linear.in_features, linear.out_features, bits, scheme, row_block, col_block, outliers,
                     bias=linear.bias is not None)
        if linear.bias is not None:
            packed.bias.copy_(linear.bias.detach().float())
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dense().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def spec(self) -> dict:
        return {**super().spec(), "bias": self.bias is not None}

    @classmethod
    def from_spec(cls, spec: dict) -> "PackedLinear":
        return cls(spec["cols"], spec["rows"], spec["bits"], spec["scheme"], spec["row_block"], spec["col_block"],
                   spec["outliers"], spec["bias"])

    def to_float(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.dense())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def logical_params(self) -> int:
        return self.rows * self.cols + (self.out_features if self.bias is not None else 0)

    def logical_nonzero(self) -> int:
        return super().logical_nonzero() + (int((self.bias != 0).sum()) if self.bias is not None else 0)

    def flops_per_token(self) -> int:
        return 2 * self.in_features * self.out_features


@register_module_kind
class PackedEmbedding(PackedMatrix):
    """An embedding table (V, d) stored as a :class:`PackedMatrix` (``row_block=1``: one scale per row)."""

    kind: ClassVar[str] = "packed_embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int, scheme: Scheme = "uniform",
                 row_block: int | None = None, col_block: int | None = None, outliers: int = 0,
                 padding_idx: int | None = None):
        super().__init__(num_embeddings, embedding_dim, bits, scheme, row_block, col_block, outliers)
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.dense(), self.padding_idx)

    @property
    def weight(self) -> torch.Tensor:
        """Decoded table (V, d); for code that reads ``embeddings.weight``."""
        return self.dense()

    def spec(self) -> dict:
        return {**super().spec(), "padding_idx": self.padding_idx}

    @classmethod
    def from_spec(cls, spec: dict) -> "PackedEmbedding":
        return cls(spec["rows"], spec["cols"], spec["bits"], spec["scheme"], spec["row_block"], spec["col_block"],
                   spec["outliers"], spec["padding_idx"])

    def to_float(self) -> nn.Embedding:
        emb = nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx)
        with torch.no_grad():
            emb.weight.copy_(self.dense())
        return emb

    def logical_params(self) -> int:
        return self.rows * self.cols
