"""Input checks shared by the pruning methods."""

from __future__ import annotations

from slimbert.errors import ConfigError
from slimbert.models.bundle import ModelBundle


def check_transformer(bundle: ModelBundle, method: str) -> None:
    """Pruning works on Transformer encoder layers; slimbert's BiLSTM/CNN students have none."""
    if not bundle.arch.is_transformer:
        raise ConfigError(f"{method} prunes Transformer encoder layers; a {bundle.arch.model_type} model has none")
