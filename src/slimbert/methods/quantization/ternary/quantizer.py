"""The ternary weight quantizer TernaryBERT trains with (TWN or loss-aware thresholds, Zhang et al. 2020)."""

from __future__ import annotations

import torch

from slimbert.methods.quantization.common.fake_quant import WeightQuantizer
from slimbert.methods.quantization.common.uniform import num_groups
from slimbert.methods.quantization.ternary.ternarize import ternarize_lat, ternarize_twn


class TernaryWeightQuantizer(WeightQuantizer):
    """Ternary weights (2-bit grid), TWN or loss-aware (LAT) thresholds (TernaryBERT).

    LAT needs the diagonal curvature that Adam estimates; the loop's optimizer is not visible to
    methods, so this module keeps its own moving average of squared gradients
    (``second_moment``, updated by the ternary method's callback with Adam's beta2) and uses
    ``d = sqrt(second_moment) + eps`` as Adam does. The last alpha (``alpha``) warm-starts the
    next step's alternation, which then usually needs a single iteration.
    """

    bits = 2

    def __init__(self, shape: tuple[int, int] | None = None, mode: str = "twn", row_block: int | None = None,
                 eps: float = 1e-8):
        super().__init__()
        if mode not in ("twn", "lat"):
            raise ValueError(f"unknown ternarization {mode!r}; expected 'twn' or 'lat'")
        if mode == "lat" and shape is None:
            raise ValueError("loss-aware ternarization needs the weight shape (for its curvature estimate)")
        self.mode, self.row_block, self.eps = mode, row_block, eps
        lat = mode == "lat"
        self.register_buffer("second_moment", torch.zeros(shape) if lat else None)
        self.register_buffer("alpha", torch.zeros(num_groups(shape[0], row_block), 1) if lat else None)

    def quantize(self, w):
        if self.mode == "lat" and bool((self.second_moment > 0).any()):
            warm = self.alpha if bool((self.alpha > 0).all()) else None
            codes, alpha = ternarize_lat(w, self.second_moment.sqrt() + self.eps, self.row_block, initial_alpha=warm)
            if self.training:
                self.alpha.copy_(alpha)
            return codes, alpha
        return ternarize_twn(w, self.row_block)  # LAT before any gradient: D is unknown, use TWN

    def extra_repr(self) -> str:
        return f"mode={self.mode}, row_block={self.row_block}"
