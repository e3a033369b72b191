"""Structured pruning with physical removal: heads (Michel et al.), FFN neurons, layers (Poor Man's BERT,
LayerDrop), block movement. Masked/emptied models equal the physically shrunk ones; artifacts reload and export."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from slimbert.errors import ConfigError
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.methods.pruning.block_movement import BlockMovementConfig, apply_block_movement, remove_emptied_units
from slimbert.methods.pruning.common.layer_dropping import layers_to_drop
from slimbert.steps.sampling import sample_batches
from slimbert.methods.pruning.common.structured import (
    HEADS,
    NEURONS,
    gate_importance,
    select_lowest,
    select_lowest_per_layer,
)
from slimbert.methods.pruning.drop_layers import DropLayersConfig, apply_drop_layers
from slimbert.methods.pruning.layerdrop import LayerDrop, LayerDropConfig, LayerSkipper, apply_layerdrop
from slimbert.methods.pruning.prune_ffn import FfnPruningConfig, apply_prune_ffn
from slimbert.methods.pruning.prune_heads import HeadPruningConfig, apply_prune_heads
from slimbert.models.artifact import load_compressed, save_compressed
from slimbert.models.structure import config_value, encoder_layers, layer_views
from slimbert.models.surgery import keep_layers
from slimbert.training.config import TrainConfig
from slimbert.training.state import TrainState

from pruning_support import step_context, tiny_bundle

QUICK = TrainConfig(learning_rate=3e-3, max_steps=6, batch_size=16)


@pytest.fixture
def ctx(tiny_glue, tmp_path):
    return step_context(tiny_glue, tmp_path / "work")


def _bundle(tiny_model_dirs, arch, ctx):
    return tiny_bundle(tiny_model_dirs[arch], ctx)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _round_trip(bundle, tmp_path):
    """Save -> reload -> ONNX; all three give the same logits."""
    batch = sample_batch(bundle)
    expected = _logits(bundle.model, batch)
    save_compressed(bundle, tmp_path / "artifact")
    again = load_compressed(tmp_path / "artifact")
    assert torch.allclose(_logits(again.model, batch), expected, atol=1e-6)
    got = onnx_logits(onnx_session(export_onnx(again, tmp_path / "m.onnx").path), batch)
    assert np.abs(got - expected.numpy()).max() < 1e-4
    return again


# -- choosing units -----------------------------------------------------------------------------

def test_select_lowest_across_layers_keeps_one_per_layer():
    scores = [torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.05, 0.06])]
    assert select_lowest(scores, 2) == {0: [0], 1: [0]}  # layer 1's second head is protected
    assert select_lowest(scores, 3) == {0: [0, 1], 1: [0]}
    with pytest.raises(ConfigError, match="cannot remove 1 more units"):
        select_lowest(scores, 4)


def test_select_lowest_per_layer_shares_the_count():
    scores = [torch.arange(10.0).flip(0), torch.arange(10.0)]
    assert select_lowest_per_layer(scores, 5) == {0: [7, 8, 9], 1: [0, 1]}


def test_silent_units_have_zero_importance(tiny_model_dirs, ctx):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    views = layer_views(bundle.model)
    with torch.no_grad():
        views[0].attn_out.weight[:, 16:24] = 0  # head 2 of layer 0 writes nothing
        views[1].ffn_out.weight[:, 5] = 0  # neuron 5 of layer 1 writes nothing
    batches = sample_batches(ctx, bundle.tokenizer, 32)
    heads = gate_importance(bundle.model, HEADS, batches, regression=False)
    neurons = gate_importance(bundle.model, NEURONS, batches, regression=False)
    assert heads[0][2] == 0 and (heads[0][[0, 1, 3]] > 0).all()
    assert neurons[1][5] == 0 and (neurons[1] > 0).sum() >= 30
    assert all(p.grad is None for p in bundle.model.parameters())  # importance never trains the model


# -- heads and neurons ------------------------------------------------------------------------

def test_head_pruning_removes_the_least_important_heads(tiny_model_dirs, arch, ctx, tmp_path):
    bundle = _bundle(tiny_model_dirs, arch, ctx)
    with torch.no_grad():
        layer_views(bundle.model)[1].attn_out.weight[:, 0:8] = 0  # head 0 of layer 1 is useless
    out = apply_prune_heads(bundle, HeadPruningConfig(fraction=0.5, rounds=2, importance_samples=32, train=QUICK), ctx)
    heads = [v.num_heads for v in layer_views(out.model)]
    assert sum(heads) == 4 and min(heads) >= 1
    assert any("heads round 1/2: removed 2 heads" in n for n in ctx.notes)
    _round_trip(out, tmp_path)


def test_silent_head_goes_first(tiny_model_dirs, ctx):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    with torch.no_grad():
        layer_views(bundle.model)[1].attn_out.weight[:, 0:8] = 0
    kept_query = layer_views(bundle.model)[1].query.weight[8:].clone()
    out = apply_prune_heads(bundle, HeadPruningConfig(fraction=0.125, rounds=1, importance_samples=32, train=None), ctx)
    assert [v.num_heads for v in layer_views(out.model)] == [4, 3]
    assert torch.equal(layer_views(out.model)[1].query.weight, kept_query)


def test_impossible_head_fraction_is_explained(tiny_model_dirs, ctx):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    with pytest.raises(ConfigError, match="would empty a layer: at most 6 can go"):
        apply_prune_heads(bundle, HeadPruningConfig(fraction=0.9, train=None), ctx)
    with pytest.raises(ConfigError, match="fraction must be in"):
        HeadPruningConfig.from_dict({"fraction": 1.0})


@pytest.mark.parametrize("scope, importance", [("global", "taylor"), ("layer", "magnitude")])
def test_ffn_pruning_gives_each_layer_its_own_width(tiny_model_dirs, ctx, tmp_path, scope, importance):
    bundle = _bundle(tiny_model_dirs, "roberta", ctx)
    cfg = FfnPruningConfig(fraction=0.5, scope=scope, importance=importance, importance_samples=32, train=QUICK)
    out = apply_prune_ffn(bundle, cfg, ctx)
    widths = [v.intermediate_size for v in layer_views(out.model)]
    assert sum(widths) == 74 - 37
    if scope == "layer":
        assert max(widths) - min(widths) <= 1
    _round_trip(out, tmp_path)


# -- layers -------------------------------------------------------------------------------------

def test_layer_dropping_strategies():
    assert layers_to_drop("top", 12, 4) == [8, 9, 10, 11]
    assert layers_to_drop("bottom", 12, 4) == [0, 1, 2, 3]
    assert layers_to_drop("alternate", 12, 4) == [4, 6, 8, 10]  # 1-based 5, 7, 9, 11
    assert layers_to_drop("alternate-even", 12, 4) == [5, 7, 9, 11]
    assert layers_to_drop("symmetric", 12, 4) == [4, 5, 6, 7]
    assert layers_to_drop("contribution", 4, 2, [0.5, 0.9, 0.2, 0.95]) == [1, 3]
    with pytest.raises(ConfigError, match="can drop 1..5 of 6 layers"):
        layers_to_drop("top", 6, 6)
    with pytest.raises(ConfigError, match="alternate dropping removes at most 3 of 6"):
        layers_to_drop("alternate", 6, 4)


def test_skipped_layers_equal_removed_layers(tiny_model_dirs, arch, ctx):
    bundle = _bundle(tiny_model_dirs, arch, ctx)
    batch = sample_batch(bundle)
    skipper = LayerSkipper(bundle.model, training_only=False)
    skipper.skipped = {0}
    masked = _logits(bundle.model, batch)
    skipper.remove()
    assert not torch.allclose(_logits(bundle.model, batch), masked)
    keep_layers(bundle.model, [1])
    assert torch.allclose(_logits(bundle.model, batch), masked, atol=1e-6)


def test_drop_layers_by_contribution(tiny_model_dirs, ctx, tmp_path):
    bundle = _bundle(tiny_model_dirs, "distilbert", ctx)
    out = apply_drop_layers(bundle, DropLayersConfig(strategy="contribution", num_drop=1, contribution_samples=32,
                                                     train=QUICK), ctx)
    assert config_value(out.model, "layers") == 1 and len(layer_views(out.model)) == 1
    assert any("input/output similarity per layer" in n for n in ctx.notes)
    _round_trip(out, tmp_path)


def test_layerdrop_skips_random_layers_deterministically(tiny_model_dirs, ctx):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    drop = LayerDrop(p=0.5, seed=3)
    drop.on_train_begin(TrainState(10, 10), bundle.model)
    seen = []
    for step in range(20):
        drop.on_step_begin(TrainState(20, 20, global_step=step), bundle.model)
        seen.append(frozenset(drop.skipper.skipped))
    assert len(set(seen)) > 1 and all(len(s) < 2 for s in seen)  # random, never every layer
    drop.on_step_begin(TrainState(20, 20, global_step=7), bundle.model)
    assert frozenset(drop.skipper.skipped) == seen[7]  # a function of the step: resumes identically
    drop.on_train_end(TrainState(10, 10), bundle.model)
    assert all(not layer._forward_hooks for layer in encoder_layers(bundle.model))


def test_layerdrop_then_remove_a_layer(tiny_model_dirs, ctx, tmp_path):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    out = apply_layerdrop(bundle, LayerDropConfig(p=0.3, num_drop=1, strategy="top", train=QUICK), ctx)
    assert config_value(out.model, "layers") == 1
    assert all(not layer._forward_hooks for layer in encoder_layers(out.model))
    _round_trip(out, tmp_path)


# -- block movement ---------------------------------------------------------------------------

def test_emptied_heads_and_neurons_are_removed_without_changing_outputs(tiny_model_dirs, arch, ctx):
    bundle = _bundle(tiny_model_dirs, arch, ctx)
    views = layer_views(bundle.model)
    with torch.no_grad():
        views[0].value.weight[8:16] = 0  # head 1: zero value rows (its value bias is folded)
        views[0].attn_out.weight[:, 24:32] = 0  # head 3: zero output columns
        views[1].query.weight[0:4, 0:4] = 0  # a zero block inside a head: that head stays
        views[1].ffn_out.weight[:, [2, 3, 30]] = 0
    batch = sample_batch(bundle)
    before = _logits(bundle.model, batch)
    heads, neurons, notes = remove_emptied_units(bundle.model)
    assert (heads, neurons, notes) == (2, 3, [])
    assert [v.num_heads for v in layer_views(bundle.model)] == [2, 4]
    assert [v.intermediate_size for v in layer_views(bundle.model)] == [37, 34]
    assert torch.allclose(_logits(bundle.model, batch), before, atol=1e-5)


def test_block_movement_prunes_blocks_and_removes_structure(tiny_model_dirs, ctx, tmp_path):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    cfg = BlockMovementConfig(sparsity=0.75, block_rows=8, block_cols=8, score_learning_rate=0.1,
                              train=replace(QUICK, max_steps=10))
    out = apply_block_movement(bundle, cfg, ctx)
    views = layer_views(out.model)
    assert [v.intermediate_size for v in views] == [9, 9]  # 37 - round(0.75 * 37) neurons kept per layer
    for v in views:  # 8x8 blocks of the value matrix: 75% of 16 blocks are zero in what remains or was removed
        zero_blocks = sum(not v.value.weight[r:r + 8, c:c + 8].any() for r in range(0, v.value.out_features, 8)
                          for c in range(0, 32, 8))
        assert zero_blocks + 4 * (4 - v.num_heads) >= 12
    _round_trip(out, tmp_path)


def test_block_sizes_must_tile(tiny_model_dirs, ctx):
    bundle = _bundle(tiny_model_dirs, "bert", ctx)
    with pytest.raises(ConfigError, match="block 5x5 does not tile a 32x32 weight"):
        apply_block_movement(bundle, BlockMovementConfig(block_rows=5, block_cols=5, train=QUICK), ctx)


def test_soft_block_movement_removes_what_the_threshold_empties(tiny_model_dirs, ctx):
    bundle = _bundle(tiny_model_dirs, "distilbert", ctx)
    cfg = BlockMovementConfig(variant="soft", sparsity=None, threshold=0.45, l1_weight=50.0, block_rows=8, block_cols=8,
                              score_learning_rate=0.1, train=replace(QUICK, max_steps=10))
    out = apply_block_movement(bundle, cfg, ctx)
    widths = [v.intermediate_size for v in layer_views(out.model)]
    removed = next(n for n in ctx.notes if n.startswith("removed "))
    assert f"{74 - sum(widths)}/74 FFN neurons" in removed and sum(widths) < 74
