"""Activation ranges for static int8: observe the float model on calibration batches.

Static quantization fixes each activation's quantizer ahead of time. We observe the *input* of
every encoder linear (what ONNX Runtime's QDQ graph quantizes) on the float model and turn each
range into ONNX Runtime's uint8 parameters (scale, zero point), which both the PyTorch int8
modules and the ONNX transform use, so the two runtimes compute the same thing.

Ranges: ``minmax`` (the smallest and largest value seen over all batches) or ``percentile``
(the p-th and (100-p)-th percentiles of each batch, averaged over batches: robust to the rare
outlier activations of BERT, at the price of clipping them). Linears that read the same tensor
(q, k and v) share one measurement per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimbert.data.batching import length_sorted_batches
from slimbert.data.encoding import EncodedDataset, PadCollator
from slimbert.methods.quantization.common.int8_modules import UINT8_MIDPOINT

UINT8_MAX = 255


@dataclass(frozen=True)
class ActivationQuant:
    """uint8 activation quantizer: ``q = clamp(round(x / scale) + zero_point, 0, 255)``."""

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, low: float, high: float) -> "ActivationQuant":
        """ONNX Runtime's asymmetric uint8 parameters for [low, high] (widened to contain 0)."""
        low, high = min(low, 0.0), max(high, 0.0)
        scale = max((high - low) / UINT8_MAX, 1e-8)
        zero_point = int(min(max(round(-low / scale), 0), UINT8_MAX))
        return cls(scale, zero_point)

    @classmethod
    def symmetric(cls, amax: float, bits: int = 8) -> "ActivationQuant":
        """The symmetric int8 grid of Q8BERT (scale amax / 127) expressed on uint8 with zero point 128."""
        return cls(max(amax, 1e-8) / (2 ** (bits - 1) - 1), UINT8_MIDPOINT)

    def to_list(self) -> list:
        return [self.scale, self.zero_point]


class RangeObserver:
    """Running [low, high] of the tensors passed to :meth:`observe`."""

    def __init__(self, method: str = "minmax", percentile: float = 99.99):
        if method not in ("minmax", "percentile"):
            raise ValueError(f"unknown calibration {method!r}; expected 'minmax' or 'percentile'")
        self.method, self.percentile = method, percentile
        self.lows: list[float] = []
        self.highs: list[float] = []

    def measure(self, x: torch.Tensor) -> tuple[float, float]:
        """[low, high] of one batch's tensor."""
        x = x.detach().float().reshape(-1)
        if self.method == "minmax":
            return float(x.min()), float(x.max())
        n = x.numel()
        k = min(n, max(1, round(n * (1 - self.percentile / 100))))  # rank of the low percentile (k-th smallest)
        return float(x.kthvalue(k).values), float(x.kthvalue(n + 1 - k).values)

    def add(self, low: float, high: float) -> None:
        self.lows.append(low)
        self.highs.append(high)

    def observe(self, x: torch.Tensor) -> None:
        self.add(*self.measure(x))

    def range(self) -> tuple[float, float]:
        if not self.lows:
            raise ValueError("no activations were observed")
        if self.method == "minmax":
            return min(self.lows), max(self.highs)
        return sum(self.lows) / len(self.lows), sum(self.highs) / len(self.highs)


@torch.no_grad()
def observe_inputs(model: nn.Module, modules: dict[str, nn.Module], dataset: EncodedDataset, *, batch_size: int = 32,
                   pad_token_id: int = 0, method: str = "minmax", percentile: float = 99.99
                   ) -> dict[str, tuple[float, float]]:
    """[low, high] of the input of each of ``modules`` (by path) over ``dataset`` run through ``model``."""
    observers = {path: RangeObserver(method, percentile) for path in modules}
    last: list = [None, None]  # the tensor measured last and its range (q, k and v see it in a row)

    def hook(path: str, x: torch.Tensor) -> None:
        if x is not last[0]:
            last[:] = [x, observers[path].measure(x)]
        observers[path].add(*last[1])

    hooks = [module.register_forward_pre_hook(lambda _m, args, path=path: hook(path, args[0]))
             for path, module in modules.items()]
    collate = PadCollator(pad_token_id)
    was_training = model.training
    model.eval()
    try:
        for idx in length_sorted_batches(dataset, batch_size):
            batch = collate([dataset[i] for i in idx])
            batch.pop("labels")
            model(**batch)
            last[:] = [None, None]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {path: obs.range() for path, obs in observers.items()}
