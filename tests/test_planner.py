"""``slimbert plan``: the choice for a budget, quick probes on a model without results, running and checking."""

from __future__ import annotations

import pytest

from slimbert.errors import SlimbertError
from slimbert.planner import Budget, Candidate, Plan, choose, make_plan, run_plan


def cand(name, ms, drop, size=10.0, runtime="onnxruntime"):
    steps = [{"method": "dynamic-int8"}] if name != "baseline" else []
    return Candidate(name, {"name": name, "steps": steps}, "measured on this model", {runtime: ms}, size, drop)


CANDIDATES = [cand("baseline", 40.0, 0.0, 90.0), cand("int8", 14.0, 0.1, 60.0), cand("pruned", 9.0, 0.9, 55.0),
              cand("compound", 3.0, 1.9, 50.0), cand("aggressive", 2.0, 8.0, 20.0)]


def test_different_budgets_give_different_plans():
    picks = {ms: choose(CANDIDATES, Budget(ms, max_drop=2.0))[0].name for ms in (50, 20, 10, 5)}
    assert picks == {50: "baseline", 20: "int8", 10: "pruned", 5: "compound"}
    assert choose(CANDIDATES, Budget(5, max_size_mb=45.0, max_drop=2.0))[0] is None  # nothing that small, fast, accurate
    assert choose(CANDIDATES, Budget(5, max_size_mb=45.0))[0].name == "aggressive"  # with no accuracy budget
    assert choose(CANDIDATES, Budget(12, runtime="pytorch"))[0] is None  # nothing timed on that runtime


def test_an_impossible_budget_names_the_closest_achievable_point():
    chosen, closest, message = choose(CANDIDATES, Budget(2.5, max_drop=2.0))
    assert chosen is None and closest.name == "compound"
    assert "no composition meets this budget" in message and "compound" in message and "3.00 ms" in message


def test_a_probe_with_unknown_accuracy_is_chosen_only_when_no_measured_one_fits():
    probe = Candidate("probe", {"name": "p", "steps": [{"method": "dynamic-int8"}]}, "quick probe",
                      {"pytorch": 1.0}, 10.0, None)
    assert choose(CANDIDATES + [probe], Budget(10, max_drop=2.0))[0].name == "pruned"
    assert choose(CANDIDATES + [probe], Budget(1.5, max_drop=2.0))[0].name == "probe"


def test_a_result_is_scaled_by_its_own_runtimes_baseline_not_by_pytorchs():
    from types import SimpleNamespace

    from slimbert.planner import _scaled

    def timings(values):
        return SimpleNamespace(latency=lambda runtime, shape: values.get(runtime))

    # that run's PyTorch baseline was contended (120 ms); its ONNX Runtime baseline was not (30 ms)
    card = SimpleNamespace(baseline=timings({"pytorch": 120.0, "onnxruntime": 30.0}),
                           compressed=timings({"pytorch": 60.0, "onnxruntime": 10.0, "openvino": 8.0}))
    now = {"pytorch": 36.0, "onnxruntime": 27.0, "openvino": 24.0}
    assert _scaled(now, card, "onnxruntime", "b1s128") == 27.0 * 10.0 / 30.0
    assert _scaled(now, card, "pytorch", "b1s128") == 36.0 * 60.0 / 120.0
    # no OpenVINO baseline in that run: the PyTorch ratio is all there is
    assert _scaled(now, card, "openvino", "b1s128") == 36.0 * 8.0 / 120.0


def test_budget_errors():
    with pytest.raises(SlimbertError, match="max-latency-ms"):
        Budget(0).validate()
    with pytest.raises(SlimbertError, match="runtime"):
        Budget(5, runtime="tpu").validate()


@pytest.fixture(scope="module")
def probed_plan(tiny_bert_dir, tiny_glue, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-results")
    return make_plan(str(tiny_bert_dir), "sst2", Budget(1e6, batch=2, seq_len=16), results=empty,
                     data_dir=str(tiny_glue), threads=1, log=lambda m: None)


def test_a_model_without_results_is_planned_from_quick_probes(probed_plan):
    sources = {c.source for c in probed_plan.candidates}
    assert sources == {"measured on this model", "quick probe"}
    probes = [c for c in probed_plan.candidates if c.source == "quick probe"]
    # The tiny model has 2 layers: recipes that drop layers or build a 3-layer student do not apply.
    assert {c.name for c in probes} == {"dynamic-int8 (probe)", "ffn (probe)", "heads-ffn (probe)"}
    assert all(c.drop is None and set(c.latency_ms) == {"pytorch", "onnxruntime", "openvino"} for c in probes)
    assert probed_plan.chosen.name == "baseline (unchanged)"  # a generous budget: nothing to do


def test_running_a_plan_checks_the_measured_result_against_the_budget(probed_plan, tiny_glue, tmp_path):
    probe = next(c for c in probed_plan.candidates if c.name == "dynamic-int8 (probe)")
    for ms, met in ((1e6, True), (1e-6, False)):
        plan = Plan(probed_plan.model, "sst2", Budget(ms, batch=2, seq_len=16), probed_plan.baseline_latency_ms,
                    probed_plan.baseline_size_mb, probed_plan.candidates, probe, None, "")
        done = run_plan(plan, tmp_path / f"out-{met}", data_dir=str(tiny_glue), threads=1, log=lambda m: None)
        assert done.result["met"] is met and done.result["checks"]["latency"] is met
        assert ("budget MET" if met else "budget NOT MET") in done.message
        assert (tmp_path / f"out-{met}" / "plan.json").is_file() and (tmp_path / f"out-{met}" / "report.html").is_file()
