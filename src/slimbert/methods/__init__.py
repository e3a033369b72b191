"""Compression methods, one subpackage per family; importing this package registers them all."""

from slimbert.methods import distillation, pruning, quantization  # noqa: F401
