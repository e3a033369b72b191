"""A model's :class:`~slimbert.model_shape.ModelShape`, read from its config alone (no weights loaded)."""

from __future__ import annotations

import os

from torch import nn

from slimbert.errors import ModelLoadError
from slimbert.model_shape import ModelShape
from slimbert.models.adaptive.exit_heads import EXIT_HEADS_ATTR, exit_heads_of
from slimbert.models.module_kinds import (
    is_factored_module,
    manifest_flags,
    shared_module_aliases,
    stores_compressed_weights,
)
from slimbert.models.structure import ARCHITECTURES, arch_of, get_module
from slimbert.models.surgery import LAYER_HEADS_KEY, LAYER_INTERMEDIATE_KEY


def shape_of(model_or_config, compressed_linears: bool = False, factored_linears: bool = False,
             shared_layers: bool = False, embedding_factor_dim: int | None = None,
             embedding_rows: int | None = None, exit_heads: bool = False) -> ModelShape:
    """The shape of a model (or its Hugging Face config); per-layer head counts and FFN widths come from
    what head/neuron pruning recorded in the config, else the uniform sizes. For a model (not a config), the
    flags are read from its encoder layers: compressed module kinds (int8, packed, sparse storage) mark
    ``compressed_linears``; low-rank factors, ``factored_linears``; modules shared between layers,
    ``shared_layers``; factored word embeddings give ``embedding_factor_dim``, trimmed ones ``embedding_rows``."""
    if isinstance(model_or_config, nn.Module):
        arch = arch_of(model_or_config)
        prefix = f"{arch.layers}." if arch.layers else None
        # Non-Transformer students have no encoder layers: all their modules count.
        encoder = [m for n, m in model_or_config.named_modules() if n.startswith(prefix)] if prefix \
            else list(model_or_config.modules())
        compressed_linears = compressed_linears or any(stores_compressed_weights(m) for m in encoder)
        factored_linears = factored_linears or any(is_factored_module(m) for m in encoder)
        if prefix:
            shared_layers = shared_layers or any(a.startswith(prefix) for a in shared_module_aliases(model_or_config))
        words = get_module(model_or_config, arch.word_embeddings)
        embedding_factor_dim = embedding_factor_dim or getattr(words, "factor_dim", None)
        embedding_rows = embedding_rows or getattr(words, "kept", None)
        exit_heads = exit_heads or exit_heads_of(model_or_config) is not None
    config = getattr(model_or_config, "config", model_or_config)
    arch = arch_of(config)
    vocab = getattr(config, "vocab_size", 0)
    if not arch.is_transformer:
        hidden = getattr(config, arch.cfg_hidden)
        return ModelShape(model_type=arch.model_type, is_transformer=False, layers=0, hidden=hidden, head_size=0,
                          heads=(), intermediate=(), vocab_size=vocab, compressed_linears=compressed_linears,
                          factored_linears=factored_linears, embedding_factor_dim=embedding_factor_dim,
                          embedding_rows=embedding_rows, exit_heads=exit_heads)
    layers = getattr(config, arch.cfg_layers)
    hidden = getattr(config, arch.cfg_hidden)
    heads_uniform = getattr(config, arch.cfg_heads)
    heads = tuple(getattr(config, LAYER_HEADS_KEY, None) or [heads_uniform] * layers)
    intermediate = tuple(getattr(config, LAYER_INTERMEDIATE_KEY, None) or [getattr(config, arch.cfg_intermediate)] * layers)
    positions = getattr(config, "max_position_embeddings", None)
    if arch.model_type == "roberta" and positions is not None:
        positions -= (getattr(config, "pad_token_id", 1) or 0) + 1  # RoBERTa's positions start after padding_idx
    return ModelShape(model_type=arch.model_type, is_transformer=True, layers=layers, hidden=hidden,
                      head_size=hidden // heads_uniform, heads=heads, intermediate=intermediate, vocab_size=vocab,
                      max_positions=positions, compressed_linears=compressed_linears, factored_linears=factored_linears,
                      shared_layers=shared_layers, embedding_factor_dim=embedding_factor_dim,
                      embedding_rows=embedding_rows, exit_heads=exit_heads,
                      uniform_layers=len(set(heads)) <= 1 and len(set(intermediate)) <= 1)


def shape_of_spec(spec: str | os.PathLike) -> ModelShape:
    """The shape of a model spec (local directory, hub id, slimbert artifact, ``minilm-l6``), from its config.

    A slimbert artifact whose modules include compressed kinds (int8, packed, sparse storage) is marked
    ``compressed_linears``: its linears are no longer plain float modules that later steps could wrap or cut.
    """
    from transformers import AutoConfig

    from slimbert.models.artifact import is_slimbert_artifact, read_manifest
    from slimbert.models.hf_logging import quiet_transformers
    from slimbert.models.loading import resolve_model_source

    source = resolve_model_source(spec)
    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read the model config at {source}: {exc}") from None
    if config.model_type not in ARCHITECTURES:
        arch_of(config)  # raises the supported-types error
    compressed_linears = factored_linears = shared_layers = False
    embedding_factor_dim = embedding_rows = None
    exit_heads = False
    if is_slimbert_artifact(source):
        manifest = read_manifest(source)
        arch = arch_of(config)
        modules = manifest.get("modules", {})
        prefix = f"{arch.layers}." if arch.layers else ""  # non-Transformer students: all their modules count
        scoped = {p: e for p, e in modules.items() if p.startswith(prefix)}
        compressed_linears, factored_linears = manifest_flags(scoped)
        shared = manifest.get("shared_modules") or {}
        shared_layers = bool(arch.layers) and any(str(a).startswith(prefix) for a in shared)
        entry = modules.get(arch.word_embeddings)
        if isinstance(entry, dict) and isinstance(entry.get("spec"), dict):
            embedding_factor_dim, embedding_rows = entry["spec"].get("factor_dim"), entry["spec"].get("kept")
        exit_heads = EXIT_HEADS_ATTR in modules
    return shape_of(config, compressed_linears=compressed_linears, factored_linears=factored_linears,
                    shared_layers=shared_layers, embedding_factor_dim=embedding_factor_dim,
                    embedding_rows=embedding_rows, exit_heads=exit_heads)
