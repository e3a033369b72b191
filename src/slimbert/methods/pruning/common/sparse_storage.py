"""Compressed storage of unstructured-sparse linears, so that pruning really shrinks the artifact.

A pruned ``nn.Linear`` stores its zeros at full price. :class:`SparseLinear` stores a bitmap of the
non-zero positions (1 bit per weight) plus the non-zero values (fp32): 2.1 bytes per weight at 50%
sparsity, 0.53 at 90%, 0.25 at 97%, against 4 dense. It is a registered module kind, so
``load_compressed`` rebuilds it and ``export_onnx`` uses its dense float equivalent.

Running it: ``kernel="dense"`` rebuilds the dense weight once (cached, not saved) and runs the
ordinary dense product -- zeros are multiplied, so sparsity buys size only. ``kernel="csr"`` runs
``torch.sparse.mm`` on a CSR copy, which skips the zeros; whether that is faster than the dense
product depends on sparsity and shape (see :mod:`slimbert.measure.sparse_matmul`), and the
compress report measures it on the whole model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from slimbert.model_shape import ModelShape
from slimbert.models.module_kinds import register_module_kind
from slimbert.models.structure import layer_views

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor -> uint8 bitmap (ceil(numel / 8),), most significant bit first (numpy.packbits order)."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) * _BITS.to(flat.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(bitmap: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a flat bool tensor of ``numel`` entries."""
    bits = (bitmap[:, None] & _BITS.to(bitmap.device)) != 0  # (ceil(numel/8), 8)
    return bits.reshape(-1)[:numel]


@dataclass(frozen=True)
class SparseStorage:
    """How pruned linears are stored and run: ``format: bitmap`` (bitmap + non-zero values) or
    ``dense``; ``kernel: dense`` (zeros multiplied: size gain only) or ``csr`` (torch sparse CSR product)."""

    format: Literal["bitmap", "dense"] = "bitmap"
    kernel: Literal["dense", "csr"] = "dense"
    min_sparsity: float = 0.05  # below this a bitmap costs more than it saves (1 bit vs 32 per weight)

    def planned(self, model: ModelShape) -> ModelShape:
        """Stored sparse, the linears are no longer plain ``nn.Linear``: later steps cannot wrap or cut them."""
        return replace(model, compressed_linears=True) if self.format != "dense" else model


@register_module_kind
class SparseLinear(nn.Module):
    """Buffers: ``bitmap`` (ceil(out*in/8),) uint8, ``values`` (nnz,) fp32, ``bias`` (out,) fp32.

    Input x: (..., in) -> (..., out). The runnable weight (dense or CSR) is rebuilt on first use
    and kept as a plain attribute, so it is neither saved nor counted as stored bytes.
    """

    kind: ClassVar[str] = "sparse_linear"

    def __init__(self, in_features: int, out_features: int, nnz: int, bias: bool = True,
                 kernel: Literal["dense", "csr"] = "dense"):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.nnz = nnz
        self.kernel = kernel
        self.register_buffer("bitmap", torch.zeros((in_features * out_features + 7) // 8, dtype=torch.uint8))
        self.register_buffer("values", torch.zeros(nnz))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._runnable: torch.Tensor | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_runnable())

    @classmethod
    def from_linear(cls, linear: nn.Linear, kernel: Literal["dense", "csr"] = "dense") -> "SparseLinear":
        weight = linear.weight.detach().float()
        nonzero = weight != 0
        sparse = cls(linear.in_features, linear.out_features, int(nonzero.sum()), linear.bias is not None, kernel)
        sparse.bitmap.copy_(pack_bits(nonzero))
        sparse.values.copy_(weight[nonzero])  # row-major order
        if linear.bias is not None:
            sparse.bias.copy_(linear.bias.detach())
        return sparse

    def _forget_runnable(self) -> None:
        self._runnable = None

    def __getstate__(self) -> dict:
        # Copies and pickles rebuild the runnable weight when first used (CSR tensors cannot be deep-copied).
        return {**self.__dict__, "_runnable": None}

    def dense_weight(self) -> torch.Tensor:
        """The weight (out, in) with zeros restored."""
        numel = self.in_features * self.out_features
        weight = torch.zeros(numel, device=self.values.device, dtype=self.values.dtype)
        weight[unpack_bits(self.bitmap, numel)] = self.values
        return weight.view(self.out_features, self.in_features)

    def runnable_weight(self) -> torch.Tensor:
        if self._runnable is None or self._runnable.device != self.values.device:
            weight = self.dense_weight()
            if self.kernel == "csr":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "sparse CSR support is in beta": known, measured
                    weight = weight.to_sparse_csr()
            self._runnable = weight
        return self._runnable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.runnable_weight()
        if self.kernel == "dense":
            return F.linear(x, weight, self.bias)
        x2 = x.reshape(-1, self.in_features).to(weight.dtype)  # (M, in)
        y = torch.sparse.mm(weight, x2.t()).t()  # (M, out): CSR (out, in) x dense (in, M)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    # -- savable module kind
    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "nnz": self.nnz,
                "bias": self.bias is not None, "kernel": self.kernel}

    @classmethod
    def from_spec(cls, spec: dict) -> "SparseLinear":
        return cls(spec["in_features"], spec["out_features"], spec["nnz"], spec["bias"], spec.get("kernel", "dense"))

    def to_float(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.dense_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def logical_params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias is not None else 0)

    def logical_nonzero(self) -> int:
        return self.nnz + (int((self.bias != 0).sum()) if self.bias is not None else 0)

    def flops_per_token(self) -> int:
        # The dense kernel multiplies every zero; the CSR kernel only the stored values.
        return 2 * (self.nnz if self.kernel == "csr" else self.in_features * self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / (self.in_features * self.out_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, density={density:.3f}, "
                f"kernel={self.kernel}")


def store_sparse(model: nn.Module, storage: SparseStorage) -> int:
    """Replace encoder ``nn.Linear`` layers at least ``storage.min_sparsity`` sparse by :class:`SparseLinear`."""
    if storage.format == "dense":
        return 0
    count = 0
    for view in layer_views(model):
        for role, linear in view.linears().items():
            if type(linear) is nn.Linear and (linear.weight == 0).float().mean() >= storage.min_sparsity:
                view.replace(role, SparseLinear.from_linear(linear, storage.kernel))
                count += 1
    return count
