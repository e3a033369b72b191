"""Our own model surgery: physically remove layers, attention heads and FFN neurons.

transformers v5 removed its head-pruning internals, so slimbert owns these operations. Every
operation leaves a plain, smaller model whose config records the new shapes, so that the saved
artifact reloads (see :mod:`slimbert.models.module_kinds`): the manifest records each smaller
``nn.Linear`` and :func:`sync_layer_attributes` brings the attention modules' head-count
attributes in line after loading. Layers may end with different head counts and FFN widths.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from slimbert.errors import ConfigError
from slimbert.models.structure import LayerView, arch_of, encoder_layers, layer_views, set_module

# Config attributes recording per-layer shapes after head/neuron pruning (config.json keeps them).
LAYER_HEADS_KEY = "slimbert_layer_heads"
LAYER_INTERMEDIATE_KEY = "slimbert_layer_intermediate_sizes"


def check_layer_indices(indices: Sequence[int], n: int) -> list[int]:
    """``indices`` as a list, checked: non-empty, each in 0..n-1, strictly increasing."""
    indices = list(indices)
    if not indices:
        raise ConfigError("at least one layer must be kept")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ConfigError(f"layer indices {bad} out of range: the model has {n} layers (valid 0..{n - 1})")
    if sorted(set(indices)) != indices:
        raise ConfigError(f"layer indices must be strictly increasing without repeats, got {indices}")
    return indices


def keep_layers(model: nn.Module, indices: Sequence[int]) -> nn.Module:
    """Keep only the encoder layers ``indices`` (0-based, in order), in place; update the config.

    Used to build students from a teacher's layers (DistilBERT, PKD) and to drop layers (Poor
    Man's BERT). ``layer_idx`` attributes are renumbered so attention caches stay consistent.
    """
    layers = encoder_layers(model)
    indices = check_layer_indices(indices, len(layers))
    arch = arch_of(model)
    kept = nn.ModuleList([layers[i] for i in indices])
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    set_module(model, arch.layers, kept)
    setattr(model.config, arch.cfg_layers, len(indices))
    if hasattr(model.config, LAYER_HEADS_KEY):  # per-layer shapes recorded by earlier pruning
        record_layer_shapes(model)
    return model


def select_linear(linear: nn.Module, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new ``nn.Linear`` keeping output rows (``dim=0``) or input columns (``dim=1``) ``index``.

    weight: (out, in) -> (len(index), in) or (out, len(index)); the bias follows the rows.
    """
    if type(linear) is not nn.Linear:
        raise ConfigError(f"structured pruning needs plain nn.Linear projections, found {type(linear).__name__}: "
                          "prune before quantizing, and bake masks first")
    index = index.to(linear.weight.device)
    weight = linear.weight.detach().index_select(dim, index)
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach().index_select(0, index) if dim == 0 else linear.bias.detach())
    new.weight.requires_grad_(linear.weight.requires_grad)
    return new


def _check_removal(kind: str, removals: Mapping[int, Sequence[int]], sizes: list[int]) -> dict[int, list[int]]:
    """Validate ``{layer: [unit indices]}`` against the current per-layer ``sizes``; return it sorted."""
    checked: dict[int, list[int]] = {}
    for layer, units in removals.items():
        if not 0 <= layer < len(sizes):
            raise ConfigError(f"layer {layer} out of range: the model has {len(sizes)} layers (valid 0..{len(sizes) - 1})")
        units = sorted(int(u) for u in units)
        bad = [u for u in units if not 0 <= u < sizes[layer]]
        if bad:
            raise ConfigError(f"{kind} indices {bad} out of range for layer {layer}, which has {sizes[layer]} {kind}s "
                              f"(valid 0..{sizes[layer] - 1})")
        if len(set(units)) != len(units):
            raise ConfigError(f"repeated {kind} indices for layer {layer}: {units}")
        if len(units) == sizes[layer]:
            raise ConfigError(
                f"cannot prune all {sizes[layer]} {kind}s of layer {layer}: a layer needs at least one; "
                "remove the whole layer instead (keep_layers, or method: drop-layers)")
        if units:
            checked[layer] = units
    return checked


def _kept(size: int, removed: list[int]) -> list[int]:
    gone = set(removed)
    return [i for i in range(size) if i not in gone]


def prune_heads(model: nn.Module, heads: Mapping[int, Sequence[int]]) -> nn.Module:
    """Remove attention heads in place: ``{layer: [head indices]}`` (0-based, current numbering).

    Head h of a layer owns rows ``h*d_h .. (h+1)*d_h`` of the query/key/value weights (H*d_h, d)
    and the same columns of the output projection (d, H*d_h); those are cut out. Layers may keep
    different numbers of heads; removing every head of a layer is an error (drop the layer).
    """
    views = layer_views(model)
    checked = _check_removal("head", heads, [v.num_heads for v in views])
    for layer, removed in checked.items():
        view = views[layer]
        d = view.head_size
        rows = torch.tensor([h * d + j for h in _kept(view.num_heads, removed) for j in range(d)])
        for role in ("query", "key", "value"):
            view.replace(role, select_linear(view.module(role), rows, dim=0))
        view.replace("attn_out", select_linear(view.attn_out, rows, dim=1))
    sync_layer_attributes(model)
    record_layer_shapes(model)
    return model


def prune_ffn_neurons(model: nn.Module, neurons: Mapping[int, Sequence[int]]) -> nn.Module:
    """Remove FFN (intermediate) neurons in place: ``{layer: [neuron indices]}`` (0-based).

    Neuron j is row j of the FFN input weight (I, d) and column j of the FFN output weight (d, I);
    each layer keeps its own intermediate size. Removing every neuron of a layer is an error.
    """
    views = layer_views(model)
    checked = _check_removal("neuron", neurons, [v.intermediate_size for v in views])
    for layer, removed in checked.items():
        view = views[layer]
        keep = torch.tensor(_kept(view.intermediate_size, removed))
        view.replace("ffn_in", select_linear(view.ffn_in, keep, dim=0))
        view.replace("ffn_out", select_linear(view.ffn_out, keep, dim=1))
    record_layer_shapes(model)
    return model


def _sync_attention(view: LayerView) -> None:
    attention = view.self_attention
    if view.arch.attn_heads_attr and hasattr(attention, view.arch.attn_heads_attr):
        setattr(attention, view.arch.attn_heads_attr, view.num_heads)
    if view.arch.attn_width_attr and hasattr(attention, view.arch.attn_width_attr):
        setattr(attention, view.arch.attn_width_attr, view.num_heads * view.head_size)


def sync_layer_attributes(model: nn.Module) -> None:
    """Set each attention module's head-count attributes from its projections' current shapes.

    The forward passes of BERT/RoBERTa/DistilBERT infer the head count from the projection
    width, but the attributes are public and other code reads them; a loaded artifact calls this
    after its smaller linears are swapped in.
    """
    if not arch_of(model).is_transformer:
        return
    for view in layer_views(model):
        _sync_attention(view)


def record_layer_shapes(model: nn.Module) -> None:
    """Write per-layer head counts and FFN widths into the config (saved in config.json).

    The config's uniform ``num_attention_heads`` stays: it defines the head width d_h = d / H.
    """
    views = layer_views(model)
    setattr(model.config, LAYER_HEADS_KEY, [v.num_heads for v in views])
    setattr(model.config, LAYER_INTERMEDIATE_KEY, [v.intermediate_size for v in views])
