"""Our own model surgery: physically remove layers (heads and FFN neurons join in the pruning work).

transformers v5 removed its head-pruning internals, so slimbert owns these operations. Every
operation leaves a plain, smaller model whose config records the new shapes, so that the saved
artifact reloads (see :mod:`slimbert.models.module_kinds`).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from slimbert.errors import ConfigError
from slimbert.models.structure import arch_of, encoder_layers, set_module


def keep_layers(model: nn.Module, indices: Sequence[int]) -> nn.Module:
    """Keep only the encoder layers ``indices`` (0-based, in order), in place; update the config.

    Used to build students from a teacher's layers (DistilBERT, PKD) and to drop layers (Poor
    Man's BERT). ``layer_idx`` attributes are renumbered so attention caches stay consistent.
    """
    layers = encoder_layers(model)
    n = len(layers)
    indices = list(indices)
    if not indices:
        raise ConfigError("at least one layer must be kept")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ConfigError(f"layer indices {bad} out of range: the model has {n} layers (valid 0..{n - 1})")
    if sorted(set(indices)) != indices:
        raise ConfigError(f"layer indices must be strictly increasing without repeats, got {indices}")
    arch = arch_of(model)
    kept = nn.ModuleList([layers[i] for i in indices])
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    set_module(model, arch.layers, kept)
    setattr(model.config, arch.cfg_layers, len(indices))
    return model
