"""Quantization (survey section 3.1)."""

from slimbert.methods.quantization import dynamic_int8  # noqa: F401
