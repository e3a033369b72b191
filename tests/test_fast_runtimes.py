"""Issue 12: accuracy gates on every step (error, fallback, degenerate results), compound recipes served on
every runtime, the peers benchmark, and serving (``slimbert predict``, ``slimbert.pipeline``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

import slimbert
from slimbert.api import compress
from slimbert.config import MethodConfig
from slimbert.errors import ConfigError, SlimbertError
from slimbert.recipe import Recipe
from slimbert.report.card import load_card
from slimbert.steps.registry import register_method
from slimbert.training.settings import RunSettings

REPO = Path(__file__).resolve().parents[1]
QUICK = {"max_steps": 3, "batch_size": 8, "learning_rate": 3e-3}


def _settings(glue) -> RunSettings:
    return RunSettings(data_dir=str(glue), max_train_samples=64, max_eval_samples=32)


@dataclass(frozen=True)
class DamageConfig(MethodConfig):
    """Scale every encoder weight by (1 - strength / 3): strength 3 wipes the encoder out, 0 leaves it be."""

    strength: int = 3


def _milder(cfg: DamageConfig):
    return replace(cfg, strength=cfg.strength - 1) if cfg.strength > 0 else None


@register_method("test-damage", DamageConfig, family="pruning", fallback=_milder)
def _damage(bundle, cfg, ctx):
    """Damages the model by a known amount (a forced accuracy drop)."""
    from slimbert.models.structure import layer_views

    with torch.no_grad():
        for view in layer_views(bundle.model):
            for linear in view.linears().values():
                linear.weight.mul_(1 - cfg.strength / 3)
    return bundle


@dataclass(frozen=True)
class OneClassConfig(MethodConfig):
    pass


@register_method("test-one-class", OneClassConfig, family="pruning")
def _one_class(bundle, cfg, ctx):
    """Makes the classifier answer class 0 for everything (a degenerate model)."""
    from slimbert.models.structure import get_module

    head = get_module(bundle.model, bundle.arch.classifier[-1])
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([5.0, -5.0]))
    return bundle


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tiny_glue, tmp_path_factory) -> Path:
    """A tiny BERT fine-tuned on the synthetic SST-2 (so that damage shows in the metric)."""
    from slimbert.finetune import finetune
    from slimbert.training.config import TrainConfig

    out = tmp_path_factory.mktemp("trained") / "model"
    finetune(str(tiny_bert_dir), "sst2", out, RunSettings(data_dir=str(tiny_glue), max_eval_samples=32),
             train_config=TrainConfig(max_steps=60, batch_size=16, learning_rate=3e-3), log=lambda m: None)
    return out


def _run(model, steps, out, glue, **kw):
    return compress(model, "sst2", Recipe.from_dict({"name": "gated", "steps": steps, **kw}), out,
                    settings=_settings(glue), latency=False, log=lambda m: None)


def test_a_gate_fails_a_step_that_loses_too_much(trained, tiny_glue, tmp_path):
    with pytest.raises(SlimbertError, match=r"accuracy gate failed on onnxruntime: accuracy .*set on_exceed: fallback"):
        _run(trained, [{"method": "test-damage", "max_metric_drop": 1.0}], tmp_path / "out", tiny_glue)
    assert not (tmp_path / "out").exists()


def test_a_gate_with_fallback_retries_milder_and_reports_it(trained, tiny_glue, tmp_path):
    result = _run(trained, [{"method": "test-damage", "max_metric_drop": 1.0, "on_exceed": "fallback"}],
                  tmp_path / "out", tiny_glue)
    stage = result.report.stages[0]
    passed_at = result.report.steps[0].config["strength"]  # the config that passed is what the report records
    assert passed_at < 3 and stage.gate.passed and stage.gate.runtime == "onnxruntime"
    assert stage.gate.fallback == f"strength 3 -> {passed_at}" and stage.gate.drop <= 1.0
    assert any(f"passed after {3 - passed_at} fallback(s)" in n for n in result.report.notes)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "What each step bought and cost" in md and f"fallback: strength 3 -> {passed_at}" in md


def test_a_gate_against_the_previous_step_and_on_pytorch(trained, tiny_glue, tmp_path):
    result = _run(trained, [{"method": "test-damage", "strength": 1},
                            {"method": "test-damage", "strength": 0, "max_metric_drop": 0.0, "gate_against": "previous"}],
                  tmp_path / "out", tiny_glue, runtime="pytorch")
    gate = result.report.stages[1].gate
    assert gate.passed and gate.against == "previous" and gate.runtime == "pytorch" and gate.drop == 0.0
    assert result.report.serving_runtime == "pytorch"  # named by the recipe


def test_a_degenerate_model_fails_its_gate_and_is_flagged_without_one(trained, tiny_glue, tmp_path):
    with pytest.raises(SlimbertError, match=r"degenerate: 100% of the examples get the same prediction"):
        _run(trained, [{"method": "test-one-class", "max_metric_drop": 100.0}], tmp_path / "gated", tiny_glue)
    result = _run(trained, [{"method": "test-one-class"}], tmp_path / "flagged", tiny_glue)
    assert any(f.startswith("degenerate") for f in result.report.flags)
    assert any(f.startswith("degenerate") for f in result.report.stages[0].flags)
    assert "Warnings" in (tmp_path / "flagged" / "report.md").read_text()


def test_gate_options_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="has no fallback"):
        Recipe.from_dict({"steps": [{"method": "test-one-class", "max_metric_drop": 1, "on_exceed": "fallback"}]})
    with pytest.raises(ConfigError, match="runtime 'tpu' is not one of"):
        Recipe.from_dict({"runtime": "tpu", "steps": [{"method": "dynamic-int8"}]})


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_a_compound_recipe_serves_on_every_runtime(arch, tiny_model_dirs, tiny_glue, tmp_path):
    """Student distillation -> structured pruning -> int8, then the artifact on PyTorch, ONNX Runtime and OpenVINO."""
    steps = [{"method": "student", "num_layers": 1},
             {"method": "distill", "train": QUICK},
             {"method": "prune-ffn", "fraction": 0.5, "rounds": 1, "importance_samples": 16,
              "distill": {}, "train": QUICK},
             {"method": "dynamic-int8"}]
    out = tmp_path / "out"
    result = compress(tiny_model_dirs[arch], "sst2", Recipe.from_dict({"steps": steps}), out,
                      settings=_settings(tiny_glue), latency_grid=((1, 16),), latency_budget_s=0.2, log=lambda m: None)
    card = load_card(out / "report.json")
    assert [s.method for s in card.stages] == ["student", "distill", "prune-ffn", "dynamic-int8"]
    assert card.compressed.precisions == {"pytorch": "int8", "onnxruntime": "int8", "openvino": "int8"}
    assert set(card.compressed.latency_ms) == {"pytorch", "onnxruntime", "openvino"}
    assert card.serving_runtime in card.compressed.latency_ms and card.gemm_peaks["openvino"]["int8"] > 0
    assert {f.runtime for f in card.compute_floors()} == {"pytorch", "onnxruntime", "openvino"}
    texts = ["a good movie", "the plot was dull and awful"]
    answers = {}
    for runtime in ("pytorch", "onnxruntime", "openvino"):
        clf = slimbert.pipeline(out, runtime=runtime)
        answers[runtime] = clf(texts)
        assert clf.runtime == runtime and all(p.label in clf.labels and 0.5 <= p.score <= 1 for p in answers[runtime])
    assert slimbert.pipeline(out).runtime == card.serving_runtime == result.report.serving_runtime


def test_predict_and_eval_on_a_runtime(trained, tiny_glue, tmp_path):
    out = tmp_path / "out"
    _run(trained, [{"method": "dynamic-int8"}], out, tiny_glue)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def cli(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "slimbert.cli", *map(str, args)], input=stdin, capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=300)

    piped = cli("predict", "--model", out, "--runtime", "openvino", "--json",
                stdin='a good movie\n{"text": "an awful film"}\n')
    assert piped.returncode == 0, piped.stderr
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [r["text"] for r in lines] == ["a good movie", "an awful film"] and {r["runtime"] for r in lines} == {"openvino"}
    plain = cli("predict", "--model", out, "a fine film")
    assert plain.returncode == 0 and plain.stdout.split("\t")[0] in slimbert.pipeline(out).labels
    for runtime in ("pytorch", "onnxruntime", "openvino"):
        result = cli("eval", "--model", out, "--task", "sst2", "--data-dir", tiny_glue, "--runtime", runtime,
                     "--batch-size", "1", "--max-eval-samples", "16", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["runtime"] == runtime
    bad = cli("predict", "--model", out, "--runtime", "tpu", "x")
    assert bad.returncode == 2 and "unknown runtime" in bad.stderr


def test_peers_produce_every_row_or_say_why(trained, tiny_glue, tmp_path, monkeypatch):
    from slimbert.bench.peers import peers_table, peers_tables, plot_peers, run_peers
    from slimbert.export import runtimes

    artifact = tmp_path / "int8"
    _run(trained, [{"method": "dynamic-int8"}], artifact, tiny_glue)
    artifact_sessions, open_onnx = [], runtimes.onnx_session

    def recording_onnx_session(path, threads=None, spinning=True):
        artifact_sessions.append(spinning)
        return open_onnx(path, threads, spinning)

    monkeypatch.setattr(runtimes, "onnx_session", recording_onnx_session)
    record = run_peers(str(trained), "sst2", [artifact], data_dir=str(tiny_glue), budget_s=0.1, natural_examples=16,
                       log=lambda m: None)
    rows = {r["name"]: r for r in record["rows"]}
    assert artifact_sessions == [False]  # timed like the peers' sessions: a spinning pool slows the next path
    assert {"pytorch-fp32", "ort-fp32", "ort-quantize-dynamic", "openvino-fp32", "openvino-nncf-int8",
            "openvino-nncf-int8-f32", "torchao-int8-dynamic", "int8@pytorch", "int8@onnxruntime", "int8@openvino",
            "int8@openvino-bf16"} == set(rows)
    # int8 IRs run with both precision hints for the ops NNCF left in float: the artifact's (recorded: f32) and
    # the other (bf16, OpenVINO's default on a CPU with bf16); the peer with its default and with f32.
    assert "f32 hint" in rows["openvino-nncf-int8-f32"]["description"]
    assert "bf16 hint" in rows["int8@openvino-bf16"]["description"]
    assert rows["int8@openvino-bf16"]["latency_ms"] != rows["int8@openvino"]["latency_ms"]  # timed apart
    for row in rows.values():
        if row["missing"]:
            assert row["name"] == "torchao-int8-dynamic" and row["missing"]  # optional, and says why
        else:
            assert 0 <= row["metric"] <= 1 and row["size_mb"] > 0
            assert set(row["latency_ms"]) == {"b1s64", "b32s64", "b1nat", "b32nat"}
    if importlib.util.find_spec("torchao") is not None:  # installed (the torchao extra): measured
        assert not rows["torchao-int8-dynamic"]["missing"] and rows["torchao-int8-dynamic"]["precision"] == "int8"
    else:  # says how to get it
        assert 'not installed (optional: pip install -e ".[torchao]")' in rows["torchao-int8-dynamic"]["missing"]
    table = peers_table(record)
    assert "openvino-nncf-int8" in table and "int8@openvino" in table
    assert plot_peers(record, tmp_path / "peers.png").stat().st_size > 10_000
    # The compute floor: every timed row at both padded shapes, in the precision its products run in.
    assert rows["pytorch-fp32"]["precision"] == "fp32" and rows["openvino-nncf-int8"]["precision"] == "int8"
    assert rows["int8@onnxruntime"]["precision"] == "int8" and rows["int8@openvino"]["precision"] == "int8"
    assert rows["int8@pytorch"]["flops"] == rows["pytorch-fp32"]["flops"] > 0  # int8 removes no products
    for row in rows.values():
        if not row["missing"]:
            assert set(row["compute_floor"]) == {"b1s64", "b32s64"}
            b1, b32 = row["compute_floor"]["b1s64"], row["compute_floor"]["b32s64"]
            peak = record["gemm_peaks"][row["runtime"]][row["precision"]]
            assert b1["floor_ms"] == pytest.approx(row["flops"] / (peak * 1e9) * 1e3)
            assert b32["floor_ms"] == pytest.approx(32 * b1["floor_ms"])
            assert b1["ratio"] == pytest.approx(row["latency_ms"]["b1s64"] / b1["floor_ms"])
    assert "latency / floor" in peers_tables(record) and "| int8@openvino | openvino | int8 |" in peers_tables(record)
