"""compress(): the artifact, the report card, and atomic output."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from slimbert.api import compress
from slimbert.config import MethodConfig
from slimbert.errors import SlimbertError
from slimbert.models.artifact import load_compressed
from slimbert.recipe import Recipe
from slimbert.report.card import ReportCard
from slimbert.steps.registry import register_method
from slimbert.training.settings import RunSettings

from helpers import make_tiny_model, vocabulary

REPORT_SIDE_KEYS = {"metrics", "size_mb", "size_mb_no_embeddings", "params", "flops", "latency_ms"}


@dataclass(frozen=True)
class ExplodeConfig(MethodConfig):
    interrupt: bool = False


@register_method("test-explode", ExplodeConfig, family="quantization", after_quantization=True)
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
    assert report == json.loads(json.dumps(result.report.to_dict()))
    assert ReportCard.from_dict(report) == result.report  # the file reads back as the same typed card
    for side in ("baseline", "compressed"):
        assert REPORT_SIDE_KEYS <= set(report[side])
        assert set(report[side]["latency_ms"]) == {"pytorch", "onnxruntime", "openvino"}
        assert set(report[side]["latency_ms"]["pytorch"]) == {"b1s16", "b4s16"}
        assert report[side]["latency_ms"]["onnxruntime"]["b1s16"]["median_ms"] > 0
    assert report["steps"][0]["method"] == "dynamic-int8" and report["steps"][0]["config"]["per_channel"] is True
    assert {"versions", "cpu", "threads"} <= set(report["environment"])
    assert report["compressed"]["size_mb_no_embeddings"] < 0.5 * report["baseline"]["size_mb_no_embeddings"]
    assert report["compressed"]["size_mb"] < report["baseline"]["size_mb"]
    assert report["ratios"]["speedup"]["onnxruntime_vs_pytorch_fp32"]["b1s16"] > 0
    assert {c["runtime"] for c in report["claims"]} == {"disk", "pytorch", "onnxruntime"}
    assert "accuracy" in report["compressed"]["metrics_onnx"] and "accuracy" in report["compressed"]["metrics_openvino"]
    assert report["compressed"]["openvino"]["precision"] == "int8" and report["baseline"]["openvino"]["precision"] == "fp32"
    assert report["serving_runtime"] in {"pytorch", "onnxruntime", "openvino"}
    assert json.loads((out / "slimbert.json").read_text())["serving_runtime"] == report["serving_runtime"]
    assert [s["method"] for s in report["stages"]] == ["dynamic-int8"] and report["stages"][0]["latency_ms"] > 0
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
    # The failing step trained nothing, so there is nothing to resume: no hidden work is kept either
    # (work with a checkpoint is kept and resumed: tests/test_reliability.py).
    assert sorted(p.name for p in tmp_path.iterdir()) == []


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
    student, distill = result.report.steps
    assert student.training == ()
    assert len(distill.training) == 1 and distill.training[0].steps == 3
    assert distill.training[0].train_seconds > 0


@dataclass(frozen=True)
class RecordModelsConfig(MethodConfig):
    pass


@register_method("test-record-models", RecordModelsConfig, family="pruning")
def _record_models(bundle, cfg, ctx):
    """Notes which model the step was given and which teacher it has (tests ``start_from``)."""
    ctx.note(f"student={bundle.source} teacher={ctx.teacher.source}")
    return bundle


def test_start_from_trains_another_model_with_the_input_as_teacher(tiny_bert_dir, tokenizer_dir, tiny_glue, tmp_path):
    """Sanh et al.'s setting: the recipe starts from another checkpoint; the input model stays the
    teacher of its steps and the report's baseline."""
    start_dir = tmp_path / "start"
    start_model = make_tiny_model("bert", start_dir, tokenizer_dir, seed=1)
    recipe = Recipe.from_dict({"steps": [
        {"method": "test-record-models"},
        {"method": "magnitude", "mode": "one-shot", "finetune": False, "sparsity": 0.5},
    ]})
    out = tmp_path / "out"
    result = compress(tiny_bert_dir, "sst2", recipe, out, settings=_settings(tiny_glue), latency=False,
                      export=False, start_from=start_dir, log=lambda m: None)
    report = result.report
    assert report.start_from == str(start_dir) and report.model == str(tiny_bert_dir)
    assert report.notes[0].startswith(f"the recipe started from {start_dir}")
    assert f"student={start_dir} teacher={tiny_bert_dir}" in report.notes
    assert f"started from `{start_dir}`" in (out / "report.md").read_text()
    # The kept weights are the start model's, not the input model's.
    pruned = load_compressed(out).model.bert.encoder.layer[0].attention.self.query.dense_weight()
    start = start_model.bert.encoder.layer[0].attention.self.query.weight
    kept = pruned != 0
    assert 0.4 < kept.float().mean() < 0.6
    torch.testing.assert_close(pruned[kept], start[kept])


def test_start_from_with_another_vocabulary_fails_before_any_work(tiny_bert_dir, tiny_glue, tmp_path):
    from transformers import BertTokenizerFast

    other_tokenizer = tmp_path / "other-tokenizer"
    BertTokenizerFast(vocab={w: i for i, w in enumerate(reversed(vocabulary()))}).save_pretrained(other_tokenizer)
    start_dir = tmp_path / "start"
    make_tiny_model("bert", start_dir, other_tokenizer)
    recipe = Recipe.from_dict({"steps": [{"method": "dynamic-int8"}]})
    with pytest.raises(SlimbertError, match="different vocabulary from the input model"):
        compress(tiny_bert_dir, "sst2", recipe, tmp_path / "out", settings=_settings(tiny_glue), latency=False,
                 start_from=start_dir, log=lambda m: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


@pytest.mark.parametrize("name", ["heads-ffn", "layers-ffn"])
def test_shipped_multi_step_structured_recipes_run_reload_and_export(name, tiny_bert_dir, tiny_glue, tmp_path):
    """The shipped recipes whose steps each change the architecture compose, reload and export."""
    from pathlib import Path

    from slimbert.models.structure import layer_views

    recipe = Recipe.from_file(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml")
    if name == "layers-ffn":  # the tiny model has 2 layers; the recipe drops 2 of MiniLM's 6
        recipe = recipe.with_overrides({"drop-layers": {"num_drop": 1}})
    settings = RunSettings(data_dir=str(tiny_glue), max_eval_samples=32, max_steps=2, batch_size=8)
    out = tmp_path / "out"
    compress(tiny_bert_dir, "sst2", recipe, out, settings=settings, latency=False, log=lambda m: None)
    report = json.loads((out / "report.json").read_text())
    assert report["compressed"]["flops"] < report["baseline"]["flops"]
    bundle = load_compressed(out)
    sizes = [view.intermediate_size for view in layer_views(bundle.model)]
    assert all(size < bundle.model.config.intermediate_size for size in sizes)  # every layer lost FFN neurons
    if name == "layers-ffn":
        assert bundle.model.config.num_hidden_layers == 1
    assert (out / "model.onnx").is_file()
