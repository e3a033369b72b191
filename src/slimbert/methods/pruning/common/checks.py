"""Input checks shared by the pruning methods, on a model or (before any work) on its shape."""

from __future__ import annotations

from slimbert.errors import ConfigError
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle


def check_transformer(model: ModelBundle | ModelShape, method: str) -> None:
    """Pruning works on Transformer encoder layers; slimbert's BiLSTM/CNN students have none."""
    is_transformer, model_type = ((model.is_transformer, model.model_type) if isinstance(model, ModelShape)
                                  else (model.arch.is_transformer, model.arch.model_type))
    if not is_transformer:
        raise ConfigError(f"{method} prunes Transformer encoder layers; a {model_type} model has none")
