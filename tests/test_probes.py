"""The research probes of benchmarks/probes/ (outside the library): masks, cut error, overlap, paired difference."""

from __future__ import annotations

import copy
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimbert.methods.pruning.common.masked_linear import MovementLinear
from slimbert.methods.pruning.common.sparse_storage import SparseLinear

PROBES = Path(__file__).resolve().parents[1] / "benchmarks" / "probes"


@lru_cache(maxsize=None)
def probe(name: str):
    """Import ``benchmarks/probes/<name>.py`` (a script, not a package)."""
    spec = importlib.util.spec_from_file_location(f"probes_{name}", PROBES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pruned_copy(dense: nn.Module, keep_largest: bool) -> nn.Module:
    """A copy of ``dense`` whose linear keeps its 3 largest (or 3 smallest) |W| of 6, stored sparse."""
    linear = copy.deepcopy(dense.linear)
    order = linear.weight.detach().abs().reshape(-1).argsort(descending=keep_largest)
    with torch.no_grad():
        linear.weight.view(-1)[order[3:]] = 0.0
    pruned = nn.Module()
    pruned.linear = SparseLinear.from_linear(linear)
    return pruned


def test_mask_overlap_with_magnitude_tells_magnitude_from_anti_magnitude_masks():
    magnitude_overlap = probe("mask_overlap").magnitude_overlap

    dense = nn.Module()
    dense.linear = nn.Linear(3, 2)  # 6 weights, half kept below
    with torch.no_grad():
        dense.linear.weight.copy_(torch.tensor([[0.1, -0.5, 0.3], [-0.2, 0.6, 0.05]]))
    largest = magnitude_overlap(dense, _pruned_copy(dense, keep_largest=True))["linear"]
    smallest = magnitude_overlap(dense, _pruned_copy(dense, keep_largest=False))["linear"]
    assert largest["density"] == smallest["density"] == largest["random_overlap"] == 0.5
    assert largest["overlap"] == 1.0 and smallest["overlap"] == 0.0
    assert largest["kept_abs_mean"] == pytest.approx((0.5 + 0.6 + 0.3) / 3)
    assert smallest["pruned_abs_mean"] == pytest.approx((0.5 + 0.6 + 0.3) / 3)


def test_mask_probe_ramps_each_ranking_to_the_kept_fraction(tiny_bert_dir, tiny_glue, tmp_path):
    main = probe("mask_probe").main

    out = tmp_path / "probe.json"
    main(["--model", str(tiny_bert_dir), "--data-dir", str(tiny_glue), "--keep", "0.5", "--dense-steps", "4",
          "--ramp-steps", "4", "--final-steps", "4", "--batch-size", "8", "--max-eval-samples", "16", "--threads", "1",
          "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["command"].startswith("python benchmarks/probes/mask_probe.py")
    assert [r["ranking"] for r in record["runs"]] == ["movement", "magnitude", "random"]
    for run in record["runs"]:
        assert run["curve"][-1]["kept"] == pytest.approx(0.5)  # step 10: the ramp (steps 4-8) is done
        assert run["cut_at_ramp_start"]["keep"] == 0.5 and run["cut_at_ramp_start"]["relative_output_error"] > 0
        assert 0.0 <= run["metrics"]["accuracy"] <= 1.0
    with pytest.raises(SystemExit):
        main(["--keep", "0"])


def test_cut_error_tells_cancelling_removals_from_coherent_ones():
    cut_error = probe("mask_probe").cut_error

    class Wrapped(nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.linear = linear

        def forward(self, x):
            return self.linear(x)

    torch.manual_seed(0)
    coherent = MovementLinear(nn.Linear(64, 8, bias=False))
    with torch.no_grad():
        coherent.weight.fill_(1.0)
        coherent.scores[:, 32:] = 1.0  # the first 32 input columns score lowest: they go at keep 0.5
    same_sign = {"x": torch.ones(16, 64)}  # every removed term W_ij x_tj = 1: d_ti = 32, spread sqrt(32)
    cut = cut_error(Wrapped(coherent), [coherent], same_sign, keep=0.5)
    assert cut["relative_output_error"] == pytest.approx(0.5)
    assert cut["coherence"] == pytest.approx(32 ** 0.5, abs=1e-3)
    assert coherent.keep_fraction == 1.0 and coherent.training  # the probe's state is left as it was

    mixed = MovementLinear(nn.Linear(256, 64, bias=False))
    with torch.no_grad():
        mixed.weight.normal_()
        mixed.scores.uniform_()
    cut = cut_error(Wrapped(mixed), [mixed], {"x": torch.randn(64, 256)}, keep=0.5)
    assert cut["coherence"] == pytest.approx((2 / torch.pi) ** 0.5, abs=0.05)  # independent signs cancel
    assert cut["relative_output_error"] == pytest.approx(0.5 ** 0.5, abs=0.05)


def test_heldout_overlap_counts_texts_found_inside_training_texts():
    overlap = probe("heldout_overlap").overlap
    result = overlap(["lazy writing", "a gem", "is just lazy writing"], ["it is just lazy writing", "a gem of a film"])
    assert result["inside_a_training_text"] == 3 and result["exact_duplicates"] == 0
    result = overlap(["a gem of a film", "a fresh story"], ["it is just lazy writing", "a gem of a film"])
    assert result == {"examples": 2, "inside_a_training_text": 1, "inside_fraction": 0.5, "exact_duplicates": 1,
                      "median_words": 4.0}


def test_openvino_int8_hint_counts_predictions_that_change():
    disagreements = probe("openvino_int8_hint").disagreements
    a = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.4]])
    b = np.array([[0.2, 0.8], [0.3, 0.7], [0.4, 0.5]])
    assert disagreements(a, a) == 0 and disagreements(a, b) == 2


def test_paired_difference_reads_the_examples_the_two_models_disagree_on():
    paired = probe("paired_difference").paired_difference
    reference = np.array([True] * 900 + [False] * 100)
    compressed = reference.copy()
    compressed[:30] = False  # 30 only the reference gets right
    compressed[900:910] = True  # 10 only the compressed model gets right
    result = paired(reference, compressed, budget=1.0)
    assert (result["only_reference_right"], result["only_compressed_right"]) == (30, 10)
    assert result["difference_points"] == -2.0
    assert result["paired_se_points"] == pytest.approx(100 * (40 - 20 ** 2 / 1000) ** 0.5 / 1000, abs=0.01)
    assert result["paired_se_points"] < result["independent_se_points"]
    assert result["verdict"] == "unresolved"  # -2.0 +- 1.23 straddles -1
    assert paired(reference, reference, budget=1.0)["verdict"] == "within"  # identical models: no spread
    wide_gap = reference.copy()
    wide_gap[:100] = False
    assert paired(reference, wide_gap, budget=1.0)["verdict"] == "outside"
    with pytest.raises(ValueError):
        paired(reference, reference[:10], budget=1.0)


def test_torchao_compile_times_eager_and_compiled_int8_beside_fp32(tiny_bert_dir, monkeypatch, capsys):
    # The plumbing, with or without the torchao extra; the real quantization and compile are the probe's own run.
    module = probe("torchao_compile")
    monkeypatch.setattr(torch, "compile", lambda model: model)
    monkeypatch.setattr(module, "torchao_int8", copy.deepcopy)
    module.main(["--model", str(tiny_bert_dir), "--seq", "32", "--budget", "0.05", "--threads", "1"])
    record = json.loads(capsys.readouterr().out)
    assert set(record["latency_ms"]) == {"pytorch-fp32", "torchao-int8-eager", "torchao-int8-compiled"}
    assert all(set(by_shape) == {"b1s32", "b32s32"} for by_shape in record["latency_ms"].values())
    assert record["max_abs_logit_difference_compiled_vs_eager"] == {"b1s32": 0.0, "b32s32": 0.0}
