"""``slimbert plan``: choose, run and check a composition of steps for a latency / size / accuracy budget.

1. **Measure the model here**: its latency at the budget's shape on each runtime (PyTorch fp32, ONNX Runtime and
   OpenVINO from its export), its size on disk.
2. **Candidates, with their expected figures and where each comes from**:
   * *measured on this model*: every compress result in the results directory whose input model is this one
     and whose task is this task: its exact recipe, its measured accuracy drop, its measured speed-up over the
     baseline's PyTorch fp32 (at the nearest timed batch size) applied to the latency measured now;
   * *composed estimate*: a measured structural result (pruning, distillation) followed by dynamic int8, its
     speed-up on a runtime estimated as the structural result's times the int8 result's gain over fp32 on that
     runtime, drops added (an estimate, labelled as such);
   * *quick probe* (no result for this model): the shipped recipes run with a one-step training budget and timed
     here: the latency and size are measured, the accuracy is not (unknown until the real run, whose recipe
     keeps its accuracy gates).
3. **Choose** the candidate that meets the budget (latency, size, drop) with the smallest expected drop, then the
   fastest; an impossible budget gets the closest achievable point.
4. **Run it** (unless ``--dry-run``) with ``compress`` and **check** the measured result against the budget.
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from slimbert.api import compress, export_runtimes, run_recipe
from slimbert.bench.records import BenchRecord, records_in
from slimbert.bench.survey import families, methods_of
from slimbert.data.tasks import get_task
from slimbert.errors import SlimbertError
from slimbert.export.onnx import export_onnx
from slimbert.export.openvino import OPENVINO_DIR, OPENVINO_XML, export_openvino
from slimbert.measure.latency import LatencyTarget, grid_key, measure_latency
from slimbert.measure.size import MB, file_size
from slimbert.models.artifact import ONNX_NAME, WEIGHTS_NAME, save_compressed
from slimbert.models.loading import load_model
from slimbert.recipe import Recipe, load_recipe
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

RUNTIMES = ("pytorch", "onnxruntime", "openvino")
PROBE_RECIPES = ("dynamic-int8", "ffn", "heads-ffn", "layers-ffn", "fast-cpu")
RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass(frozen=True)
class Budget:
    max_latency_ms: float
    batch: int = 1
    seq_len: int = 128
    max_size_mb: float | None = None
    max_drop: float | None = None  # points of the task's main metric
    runtime: str | None = None  # None: any runtime

    def validate(self) -> "Budget":
        if self.max_latency_ms <= 0:
            raise SlimbertError(f"--max-latency-ms must be > 0, got {self.max_latency_ms}")
        if self.batch < 1 or self.seq_len < 1:
            raise SlimbertError("--batch and --seq-len must be >= 1")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise SlimbertError(f"--runtime {self.runtime!r}: choose one of {', '.join(RUNTIMES)}")
        if self.max_drop is not None and self.max_drop < 0:
            raise SlimbertError(f"--max-drop is in points of the metric and must be >= 0, got {self.max_drop}")
        return self

    @property
    def shape(self) -> str:
        return grid_key(self.batch, self.seq_len)


@dataclass
class Candidate:
    name: str
    recipe: dict[str, Any]
    source: str  # "measured on this model" | "composed estimate" | "quick probe"
    latency_ms: dict[str, float] = field(default_factory=dict)  # runtime -> expected latency now
    size_mb: float | None = None
    drop: float | None = None  # expected points lost (None: unknown)
    basis: str = ""  # where the figures come from

    def best_runtime(self, budget: Budget) -> tuple[str, float] | None:
        options = {rt: v for rt, v in self.latency_ms.items() if budget.runtime in (None, rt)}
        return min(options.items(), key=lambda kv: kv[1]) if options else None

    def meets(self, budget: Budget) -> bool:
        best = self.best_runtime(budget)
        return (best is not None and best[1] <= budget.max_latency_ms
                and (budget.max_size_mb is None or (self.size_mb is not None and self.size_mb <= budget.max_size_mb))
                and (budget.max_drop is None or (self.drop is not None and self.drop <= budget.max_drop)))


@dataclass
class Plan:
    model: str
    task: str
    budget: Budget
    baseline_latency_ms: dict[str, float]
    baseline_size_mb: float
    candidates: list[Candidate]
    chosen: Candidate | None
    closest: Candidate | None
    message: str
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        def cand(c: Candidate | None):
            return None if c is None else {k: v for k, v in c.__dict__.items()}

        return {"model": self.model, "task": self.task, "budget": self.budget.__dict__,
                "baseline_latency_ms": self.baseline_latency_ms, "baseline_size_mb": self.baseline_size_mb,
                "candidates": [cand(c) for c in self.candidates], "chosen": cand(self.chosen),
                "closest": cand(self.closest), "message": self.message, "result": self.result}


def _same_model(card_model: str, model: str) -> bool:
    try:
        return Path(card_model).resolve() == Path(model).resolve()
    except OSError:
        return card_model == model


def _records(results: Path | None) -> list[BenchRecord]:
    return list(records_in(results).values()) if results is not None and results.is_dir() else []


def _nearest(latencies: dict[str, Any], batch: int) -> str | None:
    """The timed shape key whose batch is nearest the budget's."""
    keys = [k for k in latencies if k.startswith("b")]
    return min(keys, key=lambda k: abs(int(k[1:k.index("s")]) - batch)) if keys else None


def measured_candidates(model: str, task: str, records: list[BenchRecord], budget: Budget,
                        base_ms: dict[str, float], base_size_mb: float) -> list[Candidate]:
    """Candidates from this model's own compress results, their latency scaled to the model's latency measured
    now (``base_ms``, per runtime).

    The scaling is per runtime: a result's latency on runtime R, times (the model's latency on R now / the
    model's latency on R in that result's run). Scaling every runtime by the PyTorch ratio instead made a
    contended PyTorch baseline in one run (130 ms against ~33) inflate all of that run's speed-ups four-fold.
    """
    out = []
    for record in records:
        card = record.card
        # The experiment's input (an artifact's card names the model it was first made from).
        source = record.experiment.model or card.model if card is not None else None
        if (card is None or card.task != task or not card.compressed.metrics or not _same_model(source, model)
                or card.start_from or "early-exit" in methods_of(card) or "token-dropping" in methods_of(card)):
            continue
        base = card.baseline.latency_ms.get("pytorch", {})
        shape = _nearest(base, budget.batch)
        if shape is None:
            continue
        expected = {rt: _scaled(base_ms, card, rt, shape) for rt in RUNTIMES if card.compressed.latency(rt, shape)}
        metric = card.main_metric
        out.append(Candidate(
            name=record.name, recipe=card.recipe, source="measured on this model", latency_ms=expected,
            size_mb=base_size_mb * card.compressed.size_mb / card.baseline.size_mb,
            drop=(card.baseline.metric(metric) - card.compressed.metric(metric)) * 100,
            basis=f"{record.name}: `{record.command}` (timed at {shape})"))
    return out


def _scaled(base_ms: dict[str, float], card, runtime: str, shape: str) -> float:
    """A result's latency on ``runtime`` at ``shape``, scaled to the model's latency measured now: by the same
    runtime's baseline when both runs timed it, else by PyTorch's."""
    reference = runtime if card.baseline.latency(runtime, shape) and base_ms.get(runtime) else "pytorch"
    return base_ms[reference] * card.compressed.latency(runtime, shape) / card.baseline.latency(reference, shape)


def composed_candidates(measured: list[Candidate], records: list[BenchRecord]) -> list[Candidate]:
    """A measured structural result + dynamic int8, estimated from the int8 result's gain on each runtime."""
    by_name = {r.name: r for r in records}
    int8 = [c for c in measured if [s["method"] for s in c.recipe.get("steps", [])] == ["dynamic-int8"]]
    if not int8:
        return []
    q = min(int8, key=lambda c: c.drop)
    q_card = by_name[q.name].card
    shape = _nearest(q_card.baseline.latency_ms.get("pytorch", {}), 1)
    gains = {rt: q_card.baseline.latency(rt, shape) / q_card.compressed.latency(rt, shape) for rt in RUNTIMES
             if q_card.baseline.latency(rt, shape) and q_card.compressed.latency(rt, shape)}
    out = []
    for c in measured:
        card = by_name[c.name].card
        # Only float structural results compose with int8 (any quantization step already makes them int8 or lower).
        if not set(families(card)) <= {"pruning", "distillation"}:
            continue
        recipe = copy.deepcopy(c.recipe)
        recipe["name"] = f"{recipe.get('name', c.name)}+dynamic-int8"
        recipe["steps"] = list(recipe["steps"]) + [{"method": "dynamic-int8", "per_channel": True}]
        out.append(Candidate(
            name=f"{c.name}+dynamic-int8", recipe=recipe, source="composed estimate",
            latency_ms={rt: v / gains[rt] for rt, v in c.latency_ms.items() if rt in gains},
            size_mb=c.size_mb / (q_card.baseline.size_mb / q_card.compressed.size_mb) if c.size_mb else None,
            drop=c.drop + q.drop,
            basis=f"estimate: {c.name} (measured) x int8 gain per runtime from {q.name} (measured); drops added"))
    return out


def probe_candidates(bundle, data: TaskDataset, budget: Budget, work: Path, threads: int,
                     log: Callable[[str], None]) -> list[Candidate]:
    """The shipped recipes run with a one-step training budget, exported and timed at the budget's shape."""
    out = []
    settings = replace(data.settings, max_steps=1, max_train_samples=32, max_eval_samples=32)
    probe_data = TaskDataset(data.task, settings)
    for name in PROBE_RECIPES:
        path = RECIPES_DIR / f"{name}.yaml"
        if not path.is_file():
            continue
        recipe = load_recipe(path)
        try:
            from slimbert.models.shape import shape_of

            recipe.check(shape_of(bundle.model))
        except SlimbertError as exc:
            log(f"plan: probe {name} skipped ({exc})")
            continue
        log(f"plan: quick probe of recipe {name} (one training step; timing only)")
        directory = work / f"probe-{name}"
        compressed, _, _ = run_recipe(bundle.clone(), recipe, probe_data, settings, directory / "work",
                                      log=lambda m: None, teacher=bundle.clone(), stage_latency=False)
        save_compressed(compressed, directory / "artifact")
        exports = export_runtimes(compressed, directory / "artifact", probe_data)
        timings = _time(compressed, exports.onnx.path if exports.onnx else None,
                        exports.openvino.path if exports.openvino else None, budget, threads)
        out.append(Candidate(name=f"{name} (probe)", recipe=recipe.to_dict(), source="quick probe",
                             latency_ms=timings, size_mb=file_size(directory / "artifact" / WEIGHTS_NAME) / MB,
                             basis=f"recipes/{name}.yaml run with 1 training step and timed here; accuracy not "
                                   "measured (unknown until the real run)"))
    return out


def _time(bundle, onnx_path, openvino_path, budget: Budget, threads: int) -> dict[str, float]:
    target = LatencyTarget("m", bundle.model, str(onnx_path) if onnx_path else None, bundle.arch.inputs,
                           bundle.model.config.vocab_size, str(openvino_path) if openvino_path else None)
    timed = measure_latency([target], grid=[(budget.batch, budget.seq_len)], threads=threads, budget_s=3.0)["m"]
    return {rt: stats[budget.shape].median_ms for rt, stats in timed.items() if budget.shape in stats}


def make_plan(model: str, task: str, budget: Budget, *, results: Path | None = Path("benchmarks/results"),
              data_dir: str | None = None, threads: int = 2, log: Callable[[str], None] = print) -> Plan:
    """Measure the model, gather candidates and choose one (nothing is run)."""
    budget.validate()
    data = TaskDataset(get_task(task), RunSettings(data_dir=data_dir))
    bundle = load_model(model, data.task)
    with tempfile.TemporaryDirectory(prefix="slimbert-plan-") as tmp:
        tmp = Path(tmp)
        log(f"plan: measuring {model} at batch {budget.batch} x seq {budget.seq_len} on each runtime")
        save_compressed(bundle, tmp / "baseline")
        export_onnx(bundle, tmp / "baseline" / ONNX_NAME)
        export_openvino(bundle, tmp / "baseline" / OPENVINO_DIR)
        base = _time(bundle, tmp / "baseline" / ONNX_NAME, tmp / "baseline" / OPENVINO_DIR / OPENVINO_XML, budget,
                     threads)
        base_size = file_size(tmp / "baseline" / WEIGHTS_NAME) / MB
        records = _records(results)
        candidates = measured_candidates(model, data.task.name, records, budget, base, base_size)
        candidates += composed_candidates(candidates, records)
        if not candidates:
            log("plan: no results for this model and task: quick probes of the shipped recipes")
            candidates = probe_candidates(bundle, data, budget, tmp, threads, log)
    baseline = Candidate("baseline (unchanged)", {"name": "none", "steps": []}, "measured on this model",
                         latency_ms=base, size_mb=base_size, drop=0.0, basis="measured now")
    candidates = [baseline] + candidates
    chosen, closest, message = choose(candidates, budget)
    return Plan(model=model, task=data.task.name, budget=budget, baseline_latency_ms=base, baseline_size_mb=base_size,
                candidates=candidates, chosen=chosen, closest=closest, message=message)


def choose(candidates: list[Candidate], budget: Budget) -> tuple[Candidate | None, Candidate | None, str]:
    """The candidate meeting the budget with the smallest expected drop (then the fastest); when none does, None
    and the closest achievable point (the fastest within the drop budget) with the reason."""
    fitting = [c for c in candidates if c.meets(budget)]
    if not fitting and budget.max_drop is not None:
        # A probed candidate's drop is unknown: it may still fit (the real run's accuracy gates decide).
        fitting = [c for c in candidates if c.drop is None and c.meets(replace(budget, max_drop=None))]
    chosen = min(fitting, key=lambda c: (c.drop if c.drop is not None else float("inf"), c.best_runtime(budget)[1]),
                 default=None)
    if chosen is not None:
        return chosen, None, f"plan: {_describe(chosen, budget)}"
    timed = [c for c in candidates if c.best_runtime(budget)
             and (budget.max_drop is None or c.drop is None or c.drop <= budget.max_drop)]
    closest = min(timed, key=lambda c: c.best_runtime(budget)[1], default=None)
    return None, closest, ("no composition meets this budget: " + _why(candidates, budget)
                           + (f"; the closest achievable: {_describe(closest, budget)}" if closest else ""))


def _describe(c: Candidate, budget: Budget) -> str:
    runtime, ms = c.best_runtime(budget)
    drop = "unknown" if c.drop is None else f"{c.drop:.2f} points"
    size = "n/a" if c.size_mb is None else f"{c.size_mb:.1f} MB"
    return (f"{c.name} on {runtime}: expected {ms:.2f} ms at {budget.shape}, {size}, drop {drop} "
            f"[{c.source}: {c.basis}]")


def _why(candidates: list[Candidate], budget: Budget) -> str:
    fastest = min((c.best_runtime(budget)[1] for c in candidates if c.best_runtime(budget)), default=None)
    parts = [f"the fastest candidate is expected at {fastest:.2f} ms vs the budget's {budget.max_latency_ms} ms"
             if fastest is not None else "nothing could be timed"]
    if budget.max_drop is not None:
        parts.append(f"at most {budget.max_drop} points lost")
    if budget.max_size_mb is not None:
        parts.append(f"at most {budget.max_size_mb} MB")
    return ", ".join(parts)


def run_plan(plan: Plan, out: Path, *, data_dir: str | None = None, threads: int = 2, overwrite: bool = False,
             max_train_samples: int | None = None, log: Callable[[str], None] = print) -> Plan:
    """Run the chosen recipe with ``compress`` and check the measured result against the budget.
    ``max_train_samples`` shortens every training step (a quicker, less accurate run; recorded in plan.json)."""
    if plan.chosen is None:
        raise SlimbertError(plan.message)
    budget = plan.budget
    runtime, _ = plan.chosen.best_runtime(budget)
    recipe_dict = dict(plan.chosen.recipe)
    if not recipe_dict.get("steps"):
        raise SlimbertError("the unchanged model already meets the budget: nothing to run (" + plan.message + ")")
    if budget.runtime is not None:  # else the artifact serves on whichever runtime measures fastest
        recipe_dict["runtime"] = budget.runtime
    recipe = Recipe.from_dict(recipe_dict)
    result = compress(plan.model, plan.task, recipe, out,
                      settings=RunSettings(data_dir=data_dir, max_train_samples=max_train_samples),
                      latency_grid=[(budget.batch, budget.seq_len)], threads=threads, overwrite=overwrite, log=log)
    card = result.report
    # The budget holds on its runtime, or (none named) on the fastest runtime the artifact was measured on.
    timed = {rt: card.compressed.latency(rt, budget.shape) for rt in RUNTIMES if budget.runtime in (None, rt)}
    timed = {rt: ms for rt, ms in timed.items() if ms is not None}
    if timed:
        runtime = min(timed, key=timed.get)
    measured_ms = timed.get(runtime)
    metric = card.main_metric
    drop = (card.baseline.metric(metric) - card.compressed.metric(metric)) * 100
    size = card.compressed.size_mb
    checks = {"latency": measured_ms is not None and measured_ms <= budget.max_latency_ms,
              "size": budget.max_size_mb is None or size <= budget.max_size_mb,
              "drop": budget.max_drop is None or drop <= budget.max_drop}
    met = all(checks.values())
    plan.result = {"runtime": runtime, "latency_ms": measured_ms, "size_mb": size, "drop": drop, "checks": checks,
                   "met": met, "artifact": str(out), "max_train_samples": max_train_samples}
    plan.message = (f"budget {'MET' if met else 'NOT MET'}: measured {measured_ms:.2f} ms on {runtime} at "
                    f"{budget.shape} (budget {budget.max_latency_ms}), {size:.1f} MB, drop {drop:.2f} points; "
                    + ", ".join(f"{k} {'ok' if v else 'missed'}" for k, v in checks.items()))
    (Path(out) / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2, default=str))
    return plan


def plan_table(plan: Plan) -> str:
    """The candidates, expected figures labelled with their source, best runtime first."""
    budget = plan.budget
    lines = [f"baseline measured now at {budget.shape}: " + ", ".join(f"{rt} {ms:.2f} ms" for rt, ms in
                                                                   plan.baseline_latency_ms.items())
             + f"; {plan.baseline_size_mb:.1f} MB", "",
             "| candidate | source | expected ms (best runtime) | expected MB | expected drop | meets |",
             "|---|---|---|---|---|---|"]
    ranked = sorted(plan.candidates, key=lambda c: c.best_runtime(budget)[1] if c.best_runtime(budget) else 1e9)
    for c in ranked:
        best = c.best_runtime(budget)
        lines.append(f"| {c.name} | {c.source} | {f'{best[1]:.2f} ({best[0]})' if best else 'n/a'} | "
                     f"{'n/a' if c.size_mb is None else f'{c.size_mb:.1f}'} | "
                     f"{'unknown' if c.drop is None else f'{c.drop:.2f}'} | {'yes' if c.meets(budget) else ''} |")
    return "\n".join(lines)


