"""Compression methods: ``methods/<family>/<registered_name>.py`` (hyphens as underscores; a subpackage
of that name when the method owns private files), shared machinery in ``methods/<family>/common/``.

Importing this package registers every built-in method (and the module kinds and ONNX transforms
their artifacts need); the registry functions are re-exported here so that callers above this
layer ask the complete catalogue.
"""

# Importing the families registers the built-in methods.
from slimbert.methods import (  # noqa: F401
    distillation,
    dynamic,
    embedding_compression,
    factorization,
    parameter_sharing,
    pruning,
    quantization,
)
from slimbert.steps.registry import RegisteredMethod, available_methods, get_method, method_for_config

__all__ = ["RegisteredMethod", "available_methods", "get_method", "method_for_config"]
