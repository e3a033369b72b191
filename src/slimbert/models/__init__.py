"""Models: loading, the architecture table, surgery and the typed output view."""

from slimbert.models import nontransformer  # noqa: F401  (registers the BiLSTM/CNN students with the Auto classes)
from slimbert.models.bundle import ModelBundle
from slimbert.models.loading import load_model
from slimbert.models.structure import ArchSpec, LayerView, arch_of, layer_views

__all__ = ["ArchSpec", "LayerView", "ModelBundle", "arch_of", "layer_views", "load_model"]
