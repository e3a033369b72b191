"""A linear layer stored as two low-rank factors, and the (weighted) truncated SVD that produces them.

``W (out, in) ~ B (out, r) @ A (r, in)``: the layer computes ``y = B (A x) + b``, two plain dense
linears (``down``: in -> r, no bias; ``up``: r -> out, with the original bias). It costs
``r * (in + out)`` weights and ``2 * r * (in + out)`` FLOPs per token instead of ``in * out`` and
``2 * in * out``, so a rank saves anything only below the break-even ``in * out / (in + out)``.

The module is already its own baked form: it trains, saves, reloads and exports to ONNX as two MatMuls.
Its factors are plain linears that later steps may quantize (dynamic int8 swaps them for int8 linears);
the manifest spec records their kinds so a quantized low-rank model reloads.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from slimbert.models.module_kinds import FactoredComposite, register_module_kind


def break_even_rank(out_features: int, in_features: int) -> float:
    """The rank at which the factors hold as many weights as the dense matrix: ``out * in / (out + in)``."""
    return out_features * in_features / (out_features + in_features)


@register_module_kind
class LowRankLinear(FactoredComposite):
    """``y = up(down(x))``: ``down`` (in -> r, no bias) then ``up`` (r -> out, the original bias).

    x: (..., in) -> (..., r) -> (..., out).
    """

    kind: ClassVar[str] = "low-rank"
    parts: ClassVar[tuple[str, ...]] = ("down", "up")  # plain linears: later steps may quantize them

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)  # A (r, in)
        self.up = nn.Linear(rank, out_features, bias=bias)  # B (out, r), bias (out,)

    @classmethod
    def from_factors(cls, up: torch.Tensor, down: torch.Tensor, bias: torch.Tensor | None) -> "LowRankLinear":
        """From ``up`` B (out, r), ``down`` A (r, in) and the original ``bias`` (out,) or None."""
        out_features, rank = up.shape
        module = cls(down.shape[1], out_features, rank, bias=bias is not None)
        with torch.no_grad():
            module.up.weight.copy_(up)
            module.down.weight.copy_(down)
            if bias is not None:
                module.up.bias.copy_(bias)
        return module.to(up.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def spec(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "rank": self.rank,
                "bias": getattr(self.up, "bias", None) is not None,
                "factors": self.factor_specs()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "LowRankLinear":
        return cls(spec["in_features"], spec["out_features"], spec["rank"], spec["bias"]).restore_parts(spec)

    def dense_weight(self) -> torch.Tensor:
        """B @ A (out, in) of float factors: the matrix this layer stands for."""
        return self.up.weight @ self.down.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def weighted_svd(weight: torch.Tensor, input_weights: torch.Tensor | None = None,
                 output_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD of ``diag(r) W diag(c)`` for W (out, in), per-output weights r (out,) and per-input weights c (in,)
    (None: ones; both None: plain SVD).

    Returns ``U_unweighted (out, k)``, ``S (k,)``, ``Vh_unweighted (k, in)`` with ``W = U_unweighted diag(S)
    Vh_unweighted`` exactly (the weights undone: ``diag(1/r) U`` and ``Vh diag(1/c)``); keeping the first r
    components gives the rank-r factors that minimise ``|| diag(r) (W - B A) diag(c) ||_F`` (Eckart-Young on the
    weighted matrix).
    """
    w = weight.detach().float()
    rows = None if output_weights is None else output_weights.detach().float().to(w.device)
    cols = None if input_weights is None else input_weights.detach().float().to(w.device)
    scaled = w if rows is None else w * rows[:, None]
    scaled = scaled if cols is None else scaled * cols[None, :]
    u, s, vh = torch.linalg.svd(scaled, full_matrices=False)
    return (u if rows is None else u / rows[:, None]), s, (vh if cols is None else vh / cols[None, :])


def factorize(linear: nn.Linear, rank: int, input_weights: torch.Tensor | None = None,
              decomposition: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
              output_weights: torch.Tensor | None = None) -> LowRankLinear:
    """The rank-``rank`` factors of ``linear`` (weighted by ``input_weights`` (in,) and/or ``output_weights``
    (out,) when given); pass the :func:`weighted_svd` of the same weights as ``decomposition`` to skip computing
    it again."""
    u, s, vh = decomposition if decomposition is not None else weighted_svd(linear.weight, input_weights,
                                                                            output_weights)
    up = (u[:, :rank] * s[:rank]).to(linear.weight.dtype)  # B (out, r): singular values folded into B
    down = vh[:rank].to(linear.weight.dtype)  # A (r, in)
    return LowRankLinear.from_factors(up, down, None if linear.bias is None else linear.bias.detach())
