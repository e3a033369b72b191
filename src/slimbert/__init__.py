"""slimbert: make BERT-family models small and fast, measured honestly.

Every method family of Ganesh et al., "Compressing Large-Scale Transformer-Based Models: A Case
Study on BERT" (TACL 2021), composed into recipes, measured, and exported to a runtime where the
gain is real.

This package is the public facade; importing it registers every built-in method, module kind and
ONNX transform (through :mod:`slimbert.methods`), so artifacts of any kind load.
"""

from slimbert import methods as _methods  # noqa: F401,E402  (registers the built-in methods)
from slimbert.config import MethodConfig  # noqa: E402
from slimbert.errors import ConfigError, DataError, ModelLoadError, SlimbertError  # noqa: E402
from slimbert.methods import available_methods  # noqa: E402
from slimbert.models.artifact import load_compressed, save_compressed  # noqa: E402
from slimbert.models.loading import load_model  # noqa: E402
from slimbert.recipe import Recipe, load_recipe  # noqa: E402
from slimbert.steps.registry import register_method  # noqa: E402
from slimbert.version import __version__  # noqa: F401


def compress(*args, **kwargs):
    """Run a recipe on a model and task; see :func:`slimbert.api.compress`."""
    from slimbert.api import compress as _compress

    return _compress(*args, **kwargs)


def pipeline(*args, **kwargs):
    """A classifier of a (compressed) model on a runtime; see :func:`slimbert.serving.pipeline`."""
    from slimbert.serving import pipeline as _pipeline

    return _pipeline(*args, **kwargs)


__all__ = [
    "ConfigError", "DataError", "MethodConfig", "ModelLoadError", "Recipe", "SlimbertError",
    "__version__", "available_methods", "compress", "load_compressed", "load_model", "load_recipe", "pipeline",
    "register_method", "save_compressed",
]
