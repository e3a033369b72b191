"""Parameters, sizes, FLOPs (cross-checked with torch's flop counter), latency statistics, profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from slimbert.measure.flops import flops_breakdown, flops_per_example
from slimbert.measure.latency import LatencyStats, random_inputs, time_interleaved
from slimbert.measure.profile import plot_profile, profile_model, render_profile_markdown
from slimbert.measure.size import count_parameters, weight_bytes
from slimbert.models.loading import model_from_config_file
from slimbert.models.structure import layer_views

from helpers import tiny_config

BERT_BASE = Path(__file__).resolve().parents[1] / "configs" / "bert-base-uncased.json"


def _tiny(arch):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_config(tiny_config(arch)).eval()


def test_parameter_counts(arch):
    model = _tiny(arch)
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in f".{n}")
    assert counts["no_embeddings"] == counts["total"] - emb
    with torch.no_grad():
        layer_views(model)[0].ffn_in.weight.zero_()
    assert count_parameters(model)["nonzero"] == counts["nonzero"] - 37 * 32
    assert weight_bytes(model)["total"] == 4 * counts["total"]


@pytest.mark.parametrize("seq_len", [7, 16])
def test_flops_match_torch_flop_counter(arch, seq_len):
    model = _tiny(arch)
    model.set_attn_implementation("eager")
    inputs = random_inputs(99, ("input_ids", "attention_mask"), batch=3, seq=seq_len)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    assert flops_per_example(model, seq_len) * 3 == counter.get_total_flops()


def test_flops_follow_pruned_shapes():
    model = _tiny("bert")
    before = flops_breakdown(model, 10)
    view = layer_views(model)[0]
    view.replace("ffn_in", torch.nn.Linear(32, 20))
    view.replace("ffn_out", torch.nn.Linear(20, 32))
    after = flops_breakdown(model, 10)
    assert before["ffn"] - after["ffn"] == 10 * 2 * (2 * 32 * 17)


def test_bert_base_analytical_split():
    """Survey section 2: embeddings 21.8% of parameters; FFN ~65%, attention projections ~32% of FLOPs."""
    model, names = model_from_config_file(BERT_BASE)
    counts = count_parameters(model)
    assert (counts["total"] - counts["no_embeddings"]) / counts["total"] == pytest.approx(0.218, abs=0.001)
    flops = flops_breakdown(model, 128)
    total = sum(flops.values())
    assert total == pytest.approx(22.35e9, rel=0.01)  # shared/docs/RUNTIMES.md
    assert flops["ffn"] / total == pytest.approx(0.65, abs=0.01)
    assert (flops["attention_qkv"] + flops["attention_output"]) / total == pytest.approx(0.32, abs=0.01)


def test_latency_stats_and_interleaving():
    stats = LatencyStats.from_seconds([0.001 * i for i in range(1, 11)])
    assert stats.median_ms == pytest.approx(5.5) and stats.p90_ms == pytest.approx(9.1) and stats.runs == 10
    calls = {"a": 0, "b": 0}

    def runner(name):
        def run():
            calls[name] += 1
        return run

    result = time_interleaved({"a": runner("a"), "b": runner("b")}, warmup=2, min_runs=5, max_runs=7, budget_s=0.01)
    assert set(result) == {"a", "b"} and result["a"].runs == 7 and calls["a"] == calls["b"] == 10
    # Warm turns: 3 consecutive calls per runner per round, the first (after the other runner) not recorded.
    order: list[str] = []
    result = time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=0,
                              min_runs=4, max_runs=4, budget_s=0.0, repeats=3)
    assert result["a"].runs == result["b"].runs == 8  # 4 rounds x 2 recorded calls
    assert order[2:] == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3


def test_every_timed_onnx_runtime_session_is_opened_without_spinning():
    """Timing code runs several sessions in turn: an idle pool that spins steals the cores of the next one timed
    (bench peers' 4-layer students read 2-3x slower at b1 before their sessions stopped spinning)."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "slimbert"
    calls = []
    for path in sorted([*(src / "bench").glob("*.py"), *(src / "measure").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("onnx_session", "open_session"):
                spinning = {k.arg: k.value for k in node.keywords}.get("spinning")
                calls.append((path.name, node.lineno, isinstance(spinning, ast.Constant) and spinning.value is False))
    assert len(calls) >= 5  # peers (3), latency, peak, adaptive
    assert [c for c in calls if not c[2]] == []


def test_profile_components(tmp_path, arch):
    model = _tiny(arch)
    names = ("input_ids", "attention_mask") if arch != "bert" else ("input_ids", "attention_mask", "token_type_ids")
    prof = profile_model(model, seq_len=16, runs=2, warmup=1, input_names=names)
    comps = prof["components"]
    assert set(comps) >= {"embeddings", "attention_qkv", "attention_scores", "attention_output", "ffn",
                          "layernorm_residual", "pooler_classifier"}
    assert sum(c["params"] for c in comps.values()) == sum(p.numel() for p in model.parameters())
    assert sum(c["flops"] for c in comps.values()) == flops_per_example(model, 16)
    assert all(c["time_ms"] >= 0 for k, c in comps.items() if k != "other")
    assert "Feed-forward" in render_profile_markdown(prof)
    assert plot_profile(prof, tmp_path / "p.png").stat().st_size > 1000
    json.dumps(prof)  # JSON-serialisable
