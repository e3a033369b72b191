"""Benchmark experiments are valid data; the runner writes one JSON per experiment; tables render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimbert.bench.experiments import load_experiment
from slimbert.bench.runner import load_results, retime_experiment, run_experiment
from slimbert.bench.tables import latency_table, quality_size_table
from slimbert.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "benchmarks" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_shipped_experiments_are_valid(path):
    exp = load_experiment(path)
    assert exp.name == path.stem
    if exp.recipe:
        assert (REPO / exp.recipe).is_file()


def test_bad_experiment(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("kind: compress\ntask: sst2\nmodel: m\nconfig: c.json\n")
    with pytest.raises(ConfigError, match="exactly one of 'model' or 'config'"):
        load_experiment(path)
    path.write_text("kind: finetune\ntask: sst2\nmodel: m\nstart_from: minilm-l6\n")
    with pytest.raises(ConfigError, match="'start_from' applies to compress experiments only"):
        load_experiment(path)


def test_runner_writes_result_json(tiny_bert_dir, tiny_glue, tmp_path):
    exp = tmp_path / "tiny-int8.yaml"
    exp.write_text(
        f"kind: compress\nmodel: {tiny_bert_dir}\ntask: sst2\nrecipe: {REPO / 'recipes' / 'dynamic-int8.yaml'}\n"
        f"output: {tmp_path / 'out'}\nsettings: {{data_dir: {tiny_glue}, max_eval_samples: 16}}\n"
        "latency: {grid: [[1, 16]], budget_s: 0.2}\n"
    )
    record = run_experiment(exp, results_dir=tmp_path / "results", log=lambda m: None)
    saved = json.loads((tmp_path / "results" / "tiny-int8.json").read_text())
    assert saved["command"].startswith("slimbert bench run") and saved["result"]["compressed"]["size_mb"] > 0
    assert record.name == "tiny-int8" and record.card.compressed.size_mb > 0
    (tmp_path / "results" / "sparse-matmul.json").write_text(json.dumps({"rows": []}))  # not a bench record
    results = load_results(tmp_path / "results")
    assert list(results) == ["tiny-int8"]
    assert "tiny-int8" in quality_size_table(results) and "b1s16" in latency_table(results)
    timed = set(record.card.compressed.latency_ms)
    assert timed == {"pytorch", "onnxruntime", "openvino"}
    # A re-time measures every runtime the run measured (it once dropped OpenVINO from the record).
    retimed = retime_experiment(exp, results_dir=tmp_path / "results", log=lambda m: None)
    assert set(retimed.card.compressed.latency_ms) == timed == set(retimed.card.baseline.latency_ms)
    assert retimed.latency_command.startswith("slimbert bench retime")


def test_every_committed_result_loads_as_a_typed_record():
    """Every benchmarks/results/*.json is a bench record whose result reads as a typed card or summary, survives
    a round trip, and renders (Markdown card, tables)."""
    from slimbert.bench.records import BenchRecord, is_bench_record
    from slimbert.report.markdown import render_markdown

    paths = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert len(paths) > 60
    records = {}
    for path in paths:
        data = json.loads(path.read_text())
        assert is_bench_record(data), f"{path} is not a bench record (probe outputs go to benchmarks/probes/results/)"
        record = BenchRecord.from_dict(data, str(path))
        assert BenchRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
        if record.card is not None:
            assert record.card.compressed.size_mb > 0 and "Which gains are real here" in render_markdown(record.card)
        records[path.stem] = record
    assert load_results(REPO / "benchmarks" / "results") == records
    assert all(name in quality_size_table(records) for name, r in records.items() if r.card is not None)
