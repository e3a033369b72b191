"""Pruning (survey section 3.2): unstructured masks stored sparsely, and structured physical removal."""

from slimbert.methods.pruning import lottery, magnitude, movement  # noqa: F401
