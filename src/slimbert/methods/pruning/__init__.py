"""Pruning (survey section 3.2): unstructured masks stored sparsely, and structured physical removal."""

from slimbert.methods.pruning import (  # noqa: F401
    block_movement,
    ffn,
    heads,
    layerdrop,
    layers,
    lottery,
    magnitude,
    movement,
)
