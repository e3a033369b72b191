"""compress(): the artifact, the report card, and atomic output."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from slimbert.api import compress
from slimbert.config import MethodConfig
from slimbert.context import RunSettings
from slimbert.errors import SlimbertError
from slimbert.io import load_compressed
from slimbert.recipe import Recipe
from slimbert.registry import register_method

REPORT_SIDE_KEYS = {"metrics", "size_mb", "size_mb_no_embeddings", "params", "flops", "latency_ms"}


@dataclass(frozen=True)
class ExplodeConfig(MethodConfig):
    interrupt: bool = False


@register_method("test-explode", ExplodeConfig, family="quantization")
def _explode(bundle, cfg, ctx):
    """A step that fails, to test that nothing half-written is left behind."""
    (ctx.work_dir / "partial.txt").write_text("half")
    if cfg.interrupt:
        raise KeyboardInterrupt
    raise RuntimeError("boom")


def _settings(tiny_glue):
    return RunSettings(data_dir=str(tiny_glue), max_eval_samples=32)


def test_compress_writes_artifact_onnx_and_report(tiny_bert_dir, tiny_glue, tmp_path):
    out = tmp_path / "out"
    result = compress(tiny_bert_dir, "sst2", Recipe.from_dict({"steps": [{"method": "dynamic-int8"}]}), out,
                      settings=_settings(tiny_glue), latency_grid=((1, 16), (4, 16)), latency_budget_s=0.2, log=lambda m: None)
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.onnx", "config.json", "slimbert.json",
                                               "report.json", "report.md", "tokenizer.json"}
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    for side in ("baseline", "compressed"):
        assert REPORT_SIDE_KEYS <= set(report[side])
        assert set(report[side]["latency_ms"]) == {"pytorch", "onnxruntime"}
        assert set(report[side]["latency_ms"]["pytorch"]) == {"b1s16", "b4s16"}
        assert report[side]["latency_ms"]["onnxruntime"]["b1s16"]["median_ms"] > 0
    assert report["steps"][0]["method"] == "dynamic-int8" and report["steps"][0]["config"]["per_channel"] is True
    assert {"versions", "cpu", "threads"} <= set(report["environment"])
    assert report["compressed"]["size_mb_no_embeddings"] < 0.5 * report["baseline"]["size_mb_no_embeddings"]
    assert report["compressed"]["size_mb"] < report["baseline"]["size_mb"]
    assert report["ratios"]["speedup"]["onnxruntime_vs_pytorch_fp32"]["b1s16"] > 0
    assert {c["runtime"] for c in report["claims"]} == {"disk", "pytorch", "onnxruntime"}
    assert "accuracy" in report["compressed"]["metrics_onnx"]
    md = (out / "report.md").read_text()
    assert "Which gains are real here" in md and "b4s16" in md
    # The artifact reloads and runs.
    bundle = load_compressed(out)
    enc = bundle.tokenizer(["a good movie"], return_tensors="pt")
    with torch.no_grad():
        assert bundle.model(**enc).logits.shape == (1, 2)
    assert not (tmp_path / ".out.work").exists() and not (tmp_path / ".out.partial").exists()


def test_existing_output_needs_overwrite(tiny_bert_dir, tiny_glue, tmp_path):
    (tmp_path / "out").mkdir()
    recipe = Recipe.from_dict({"steps": [{"method": "dynamic-int8"}]})
    with pytest.raises(SlimbertError, match="already exists; pass --overwrite"):
        compress(tiny_bert_dir, "sst2", recipe, tmp_path / "out", settings=_settings(tiny_glue), latency=False)
    compress(tiny_bert_dir, "sst2", recipe, tmp_path / "out", settings=_settings(tiny_glue), latency=False,
             overwrite=True, log=lambda m: None)
    assert (tmp_path / "out" / "report.json").is_file()


@pytest.mark.parametrize("interrupt", [False, True])
def test_failure_leaves_no_output(tiny_bert_dir, tiny_glue, tmp_path, interrupt):
    recipe = Recipe.from_dict({"steps": [{"method": "dynamic-int8"}, {"method": "test-explode", "interrupt": interrupt}]})
    with pytest.raises(KeyboardInterrupt if interrupt else RuntimeError):
        compress(tiny_bert_dir, "sst2", recipe, tmp_path / "out", settings=_settings(tiny_glue), latency=False,
                 log=lambda m: None)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".out.partial").exists()
    # Resumable work is kept beside it, and said so.
    assert (tmp_path / ".out.work").is_dir()


def test_bad_recipe_fails_before_any_work(tiny_bert_dir, tiny_glue, tmp_path):
    from slimbert.errors import ConfigError

    with pytest.raises(ConfigError):
        compress(tiny_bert_dir, "sst2", tmp_path / "missing.yaml", tmp_path / "out", settings=_settings(tiny_glue))
    assert not any(tmp_path.iterdir())


def test_methods_compose_through_one_recipe(tiny_bert_dir, tiny_glue, tmp_path):
    """Distil a smaller student, cut FFN neurons out of it, then quantize it: three families, one recipe."""
    quick = {"learning_rate": 3e-3, "max_steps": 4, "batch_size": 16}
    recipe = Recipe.from_dict({"steps": [
        {"method": "student", "num_layers": 1, "layer_selection": "uniform"},
        {"method": "distill", "logits_loss": "kl", "train": quick},
        {"method": "prune-ffn", "fraction": 0.5, "rounds": 1, "importance_samples": 32, "train": quick},
        {"method": "dynamic-int8"},
    ]})
    out = tmp_path / "out"
    compress(tiny_bert_dir, "sst2", recipe, out, settings=_settings(tiny_glue), latency=False, log=lambda m: None)
    report = json.loads((out / "report.json").read_text())
    assert [s["method"] for s in report["steps"]] == ["student", "distill", "prune-ffn", "dynamic-int8"]
    assert report["compressed"]["params"]["total"] < report["baseline"]["params"]["total"]
    bundle = load_compressed(out)
    assert bundle.model.config.num_hidden_layers == 1
    enc = bundle.tokenizer(["a good movie", "a bad one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch_logits = bundle.model(**enc).logits
    assert torch_logits.shape == (2, 2) and torch.isfinite(torch_logits).all()
    assert (out / "model.onnx").is_file()


def test_report_records_training_time_per_step(tiny_bert_dir, tiny_glue, tmp_path):
    recipe = Recipe.from_dict({"steps": [{"method": "student", "num_layers": 1},
                                         {"method": "distill", "train": {"max_steps": 3, "batch_size": 8}}]})
    result = compress(tiny_bert_dir, "sst2", recipe, tmp_path / "out", settings=_settings(tiny_glue), latency=False,
                      log=lambda m: None)
    student, distill = result.report["steps"]
    assert student["training"] == []
    assert len(distill["training"]) == 1 and distill["training"][0]["steps"] == 3
    assert distill["training"][0]["train_seconds"] > 0
