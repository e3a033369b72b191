"""Physical removal of heads and FFN neurons: equal to the gated (masked) model, reloads, exports to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimbert.data.tasks import get_task
from slimbert.errors import ConfigError
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.measure.flops import flops_per_example
from slimbert.methods.pruning.common.unit_gates import head_gates, neuron_gates
from slimbert.models.artifact import load_compressed, read_manifest, save_compressed
from slimbert.models.loading import load_model
from slimbert.models.structure import layer_views
from slimbert.models.surgery import LAYER_HEADS_KEY, LAYER_INTERMEDIATE_KEY, prune_ffn_neurons, prune_heads

HEADS = {0: [1, 3], 1: [0]}  # per-layer different head counts: 2 and 3 of 4 left
NEURONS = {0: [0, 5, 36], 1: list(range(20))}


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _masks(sizes, removed):
    masks = []
    for layer, n in enumerate(sizes):
        m = torch.ones(n)
        m[removed.get(layer, [])] = 0
        masks.append(m)
    return masks


def test_pruned_heads_equal_gated_heads(tiny_model_dirs, arch):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    batch = sample_batch(bundle)
    with head_gates(bundle.model) as gates:
        gates.set_masks(_masks([4, 4], HEADS))
        masked = _logits(bundle.model, batch)
    full_flops = flops_per_example(bundle.model, 16)
    prune_heads(bundle.model, HEADS)
    views = layer_views(bundle.model)
    assert [v.num_heads for v in views] == [2, 3]
    assert views[0].query.weight.shape == (16, 32) and views[0].attn_out.weight.shape == (32, 16)
    attn_heads_attr = bundle.arch.attn_heads_attr
    assert getattr(views[1].self_attention, attn_heads_attr) == 3
    assert getattr(bundle.model.config, LAYER_HEADS_KEY) == [2, 3]
    assert torch.allclose(_logits(bundle.model, batch), masked, atol=1e-5)
    assert flops_per_example(bundle.model, 16) < full_flops


def test_pruned_neurons_equal_gated_neurons(tiny_model_dirs, arch):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    batch = sample_batch(bundle)
    with neuron_gates(bundle.model) as gates:
        gates.set_masks(_masks([37, 37], NEURONS))
        masked = _logits(bundle.model, batch)
    prune_ffn_neurons(bundle.model, NEURONS)
    assert [v.intermediate_size for v in layer_views(bundle.model)] == [34, 17]
    assert getattr(bundle.model.config, LAYER_INTERMEDIATE_KEY) == [34, 17]
    assert torch.allclose(_logits(bundle.model, batch), masked, atol=1e-5)


def test_pruned_model_reloads_and_exports(tiny_model_dirs, arch, tmp_path):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    prune_heads(bundle.model, HEADS)
    prune_ffn_neurons(bundle.model, NEURONS)
    batch = sample_batch(bundle)
    expected = _logits(bundle.model, batch)
    save_compressed(bundle, tmp_path / "pruned")
    modules = read_manifest(tmp_path / "pruned")["modules"]
    query_path = layer_views(bundle.model)[0].module_path("query")
    assert modules[query_path]["spec"]["out_features"] == 16
    again = load_compressed(tmp_path / "pruned")
    views = layer_views(again.model)
    assert [v.num_heads for v in views] == [2, 3] and [v.intermediate_size for v in views] == [34, 17]
    assert getattr(views[0].self_attention, bundle.arch.attn_heads_attr) == 2
    assert torch.allclose(_logits(again.model, batch), expected, atol=1e-6)
    exported = export_onnx(again, tmp_path / "pruned.onnx")
    assert exported.fused_ops.get("Attention") == 2  # per-layer head counts still fuse (see export/head_counts.py)
    got = onnx_logits(onnx_session(exported.path), batch)
    assert np.abs(got - expected.numpy()).max() < 1e-4


@pytest.mark.parametrize("removal, fragment", [
    ({0: [0, 1, 2, 3]}, "cannot prune all 4 heads of layer 0"),
    ({2: [0]}, "layer 2 out of range"),
    ({0: [4]}, "head indices [4] out of range"),
    ({0: [1, 1]}, "repeated head indices"),
])
def test_impossible_head_removals_are_explained(tiny_bert_dir, removal, fragment):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    with pytest.raises(ConfigError) as exc:
        prune_heads(bundle.model, removal)
    assert fragment in str(exc.value)
    assert [v.num_heads for v in layer_views(bundle.model)] == [4, 4]  # nothing was cut before the error


def test_all_neurons_is_an_error(tiny_bert_dir):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    with pytest.raises(ConfigError, match="cannot prune all 37 neurons of layer 1"):
        prune_ffn_neurons(bundle.model, {1: range(37)})
