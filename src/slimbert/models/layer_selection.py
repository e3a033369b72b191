"""Which of a model's layers to keep: the selection rules of students (DistilBERT, PKD) and of layer dropping."""

from __future__ import annotations

from typing import Literal

from slimbert.errors import ConfigError

LayerSelection = Literal["every-other", "first", "last", "uniform"]


def select_layers(selection: LayerSelection, teacher_layers: int, num_layers: int) -> list[int]:
    """0-based teacher layers to copy. ``every-other`` is DistilBERT's choice (one of every two layers)."""
    n, L = num_layers, teacher_layers
    if not 1 <= n <= L:
        raise ConfigError(f"num_layers must be in 1..{L} (the teacher has {L} layers), got {n}")
    if selection == "every-other":
        if 2 * n > L + 1:
            raise ConfigError(f"every-other selection keeps at most {(L + 1) // 2} of {L} layers, asked for {n}")
        return list(range(0, 2 * n, 2))
    if selection == "first":
        return list(range(n))
    if selection == "last":
        return list(range(L - n, L))
    # uniform: spread over the depth, always keeping the last layer
    return sorted({round((j + 1) * L / n) - 1 for j in range(n)})
