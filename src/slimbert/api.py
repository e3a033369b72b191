"""``compress``: run a recipe on a model and task, write the artifact and the report card.

The output directory appears only when everything succeeded: work happens in a hidden staging
directory beside it that is renamed at the end, so a failure or Ctrl-C never leaves a
half-written output. Training steps keep resumable checkpoints in ``.OUT.work`` beside the
output; rerunning the same command resumes them, and success removes it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from slimbert.config import MethodConfig
from slimbert.data.tasks import get_task
from slimbert.errors import SlimbertError
from slimbert.export.onnx import OnnxExport, computes_in_int8, export_onnx
from slimbert.export.onnx_segments import SegmentsExport, export_segments
from slimbert.export.openvino import OPENVINO_DIR, OpenVinoExport, export_openvino
from slimbert.export.runtimes import open_session
from slimbert.measure.flops import flops_per_example
from slimbert.measure.latency import (
    DEFAULT_GRID,
    LatencyTarget,
    grid_key,
    measure_latency,
    pytorch_runner,
    random_inputs,
    time_interleaved,
)
from slimbert.measure.peak import gemm_peaks
from slimbert.measure.size import MB, count_parameters, file_size, weight_bytes
from slimbert.methods import get_method
from slimbert.models.adaptive.runner import AdaptiveSettings
from slimbert.models.artifact import (
    MANIFEST_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    load_compressed,
    save_compressed,
    write_manifest_fields,
)
from slimbert.models.bundle import ModelBundle
from slimbert.models.loading import check_head_matches_task, load_model, model_identity
from slimbert.models.module_kinds import computes_in_int8 as module_computes_in_int8
from slimbert.models.shape import shape_of
from slimbert.outdir import OutputLock, check_fingerprint, check_replaceable, check_writable, sibling
from slimbert.recipe import Recipe, RecipeStep, load_recipe
from slimbert.report.card import (
    Claim,
    Environment,
    GateOutcome,
    ModelMeasurements,
    OnnxInfo,
    OpenVinoInfo,
    ParamCounts,
    ReportCard,
    Stage,
    StepRecord,
    TrainingRun,
    load_card,
)
from slimbert.report.card_html import render_card_html
from slimbert.report.markdown import render_markdown
from slimbert.steps.context import StepContext
from slimbert.steps.gate import DEFAULT_GATE_RUNTIME, evaluate_on
from slimbert.training.distributed import is_main_process, wait_for_everyone
from slimbert.training.evaluate import Evaluation, degenerate_flags
from slimbert.training.seeding import seed_everything
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

FLOPS_SEQ_LEN = 128


@dataclass
class CompressionResult:
    out_dir: Path
    report: ReportCard
    bundle: ModelBundle


def run_recipe(bundle: ModelBundle, recipe: Recipe, data: TaskDataset, settings: RunSettings, work_dir: Path,
               log: Callable[[str], None] = print, teacher: ModelBundle | None = None,
               stage_latency: bool = False) -> tuple[ModelBundle, list[StepRecord], StepContext]:
    """Apply each step of ``recipe`` in order; return the model, a record of the steps and the context.

    The steps' teacher (distillation, accuracy gates) is ``teacher``, by default a copy of ``bundle``.
    After each step the model is measured (``ctx.stages``: the report's waterfall; ``stage_latency``
    adds a short PyTorch timing) and its accuracy gate, if it has one, is checked on the gate runtime;
    a failing gate either fails the run or, with ``on_exceed: fallback``, the step runs again milder.
    """
    teacher = teacher if teacher is not None else bundle.clone()
    steps = []
    ctx = StepContext(data=data, settings=settings, work_dir=work_dir, teacher=teacher,
                      gate_runtime=recipe.runtime or DEFAULT_GATE_RUNTIME)
    for i, step in enumerate(recipe.steps):
        method = get_method(step.method)
        log(f"step {i + 1}/{len(recipe.steps)}: {step.method}")
        started = time.perf_counter()
        bundle, config, outcome = _run_gated_step(bundle, step, method, ctx, i, work_dir, log)
        # "seconds" is this process's wall time; "training" sums each run's time over resumes.
        record = StepRecord(method=step.method, family=method.family,
                            config=replace(step, config=config).fields(), seconds=round(time.perf_counter() - started, 2),
                            training=tuple(TrainingRun(**run) for run in ctx.training_runs))
        bundle.history.append({"method": step.method, "config": record.config})
        steps.append(record)
        ctx.stages.append(measure_stage(bundle, ctx, i, step.method, outcome, stage_latency))
    ctx.work_dir = work_dir
    return bundle, steps, ctx


def _run_gated_step(bundle: ModelBundle, step: RecipeStep, method, ctx: StepContext, i: int, work_dir: Path,
                    log: Callable[[str], None]) -> tuple[ModelBundle, MethodConfig, GateOutcome | None]:
    """One step, with its accuracy gate: the model, the config that passed, and the gate's outcome."""
    gate = step.gate
    retry = gate is not None and gate.on_exceed == "fallback" and callable(method.fallback)
    if gate is not None and gate.gate_against == "previous":
        ctx.gate, ctx.work_dir = gate, work_dir / f"step{i}-{step.method}"
        ctx.previous_evaluation = evaluate_on(bundle, ctx.data, ctx.gate_runtime, ctx.work_dir / "gate")
    config, attempt = step.config, 0
    while True:
        ctx.step_index, ctx.step_method = i, step.method
        seed_everything(ctx.settings.seed + i)  # new parameters a step creates (students, heads) follow --seed
        ctx.distillation, ctx.gate, ctx.gate_outcome, ctx.gate_flags = step.distill, gate, None, []
        ctx.work_dir = work_dir / (f"step{i}-{step.method}" + (f"-fallback{attempt}" if attempt else ""))
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        ctx.training_runs = []
        result = method.apply(bundle.clone() if retry else bundle, config, ctx)
        if gate is None:
            return result, config, None
        # Methods with a per-layer fallback check the gate themselves (enforce_accuracy); the others here.
        outcome = ctx.gate_outcome if method.fallback == "layers" else ctx.check_gate(result)
        if outcome.passed:
            if attempt:
                ctx.note(f"step {i + 1} ({step.method}): the accuracy gate passed after {attempt} fallback(s), with "
                         f"{_config_difference(step.config, config)}")
                outcome = replace(outcome, fallback=_config_difference(step.config, config))
            return result, config, outcome
        milder = method.fallback(config) if retry else None
        if milder is None:
            how = ("no milder setting is left" if retry else
                   "set on_exceed: fallback to retry milder" if callable(method.fallback) else
                   f"{step.method} has no fallback")
            raise ctx.gate_error(outcome, f"Step {i + 1} ({step.method}): {how}; raise max_metric_drop, or change the "
                                          "step.")
        log(f"accuracy gate failed ({-outcome.drop:+.2f} points on {outcome.runtime}); retrying {step.method} with "
            f"{_config_difference(config, milder)}")
        config, attempt = milder, attempt + 1


def _config_difference(before: MethodConfig, after: MethodConfig) -> str:
    a, b = before.to_dict(), after.to_dict()
    return ", ".join(f"{k} {a[k]} -> {b[k]}" for k in a if a[k] != b[k]) or "the same config"


def measure_stage(bundle: ModelBundle, ctx: StepContext, i: int, method: str, outcome: GateOutcome | None,
                  latency: bool) -> Stage:
    """The model after step ``i``: metrics (PyTorch), size, FLOPs, a short timing; flags if degenerate."""
    session = open_session(bundle, None, "pytorch")
    pad = bundle.tokenizer.pad_token_id or 0
    evaluation = ctx.data.evaluation(lambda ds: session.predict(ds, pad_token_id=pad), bundle.tokenizer)
    flags = degenerate_flags(evaluation, ctx.task.main_metric, ctx.input_evaluation("pytorch"))
    for flag in flags:
        ctx.note(f"after step {i + 1} ({method}): {flag}")
    timing = None
    if latency:
        inputs = random_inputs(bundle.model.config.vocab_size, bundle.arch.inputs, 1, ctx.settings.seq_len)
        timing = time_interleaved({"m": pytorch_runner(bundle.model, inputs)}, budget_s=2.0)["m"].median_ms
    return Stage(step=i + 1, method=method, metrics=evaluation.metrics, size_mb=weight_bytes(bundle.model)["total"] / MB,
                 params=count_parameters(bundle.model)["total"], flops=flops_per_example(bundle.model, FLOPS_SEQ_LEN),
                 latency_ms=timing, gate=outcome, flags=tuple(flags))


@dataclass
class Exports:
    """What an artifact was converted to, for the fast runtimes (None: not exported, or conversion failed)."""

    onnx: OnnxExport | None = None
    openvino: OpenVinoExport | None = None
    notes: list[str] = field(default_factory=list)


def export_runtimes(bundle: ModelBundle, directory: Path, data: TaskDataset) -> Exports:
    """Export ``bundle`` for ONNX Runtime and OpenVINO into ``directory``; a kind that cannot convert is noted
    with the reason (the PyTorch artifact still stands)."""
    exports = Exports()
    if AdaptiveSettings.from_dict(bundle.adaptive).active:
        return _export_adaptive(bundle, directory)
    try:
        exports.onnx = export_onnx(bundle, directory / ONNX_NAME)
        exports.notes += exports.onnx.notes
    except Exception as exc:  # an exotic module may not export
        exports.notes.append(f"ONNX export failed ({type(exc).__name__}: {exc}); no ONNX Runtime artifact")
    try:
        exports.openvino = export_openvino(bundle, directory / OPENVINO_DIR, calibration=data.train_set(bundle.tokenizer))
        exports.notes += exports.openvino.notes
    except Exception as exc:  # OpenVINO may not read every graph
        exports.notes.append(f"OpenVINO conversion failed ({type(exc).__name__}: {exc}); no OpenVINO artifact")
    return exports


def _export_adaptive(bundle: ModelBundle, directory: Path) -> Exports:
    """An adaptive model (early exit, token dropping) on ONNX Runtime: its segments, driven by the runner."""
    exports = Exports(notes=["OpenVINO: not converted (an adaptive model's runner drives ONNX Runtime segments; "
                             "a single OpenVINO graph cannot let examples leave the batch)"])
    try:
        exports.onnx = export_segments(bundle, directory)
        exports.notes += exports.onnx.notes
    except Exception as exc:  # an exotic module may not export
        exports.notes.append(f"ONNX segment export failed ({type(exc).__name__}: {exc}); no ONNX Runtime artifact")
        return exports
    try:  # the fused full-depth graph too: the static reference `slimbert bench adaptive` compares with
        export_onnx(bundle, directory / ONNX_NAME)
    except Exception as exc:
        exports.notes.append(f"the static full-depth ONNX graph did not export ({type(exc).__name__}: {exc})")
    return exports


def describe(bundle: ModelBundle, artifact_dir: Path | None, exports: Exports, data: TaskDataset,
             evaluate: bool = True) -> tuple[ModelMeasurements, dict[str, Evaluation]]:
    """Metrics on every runtime the model was exported to, sizes, parameters and FLOPs (latency is added
    separately), and the evaluations behind the metrics (for degeneracy checks).

    ``evaluate=False`` skips task metrics (for shape-only benchmarks on random weights).
    """
    stored = weight_bytes(bundle.model)
    evaluations: dict[str, Evaluation] = {}
    if evaluate:
        pad = bundle.tokenizer.pad_token_id or 0
        for runtime, exported in (("pytorch", True), ("onnxruntime", exports.onnx), ("openvino", exports.openvino)):
            if exported:
                session = (open_session(bundle, None, "pytorch") if runtime == "pytorch"
                           else _session_for(bundle, exported, runtime))
                evaluations[runtime] = data.evaluation(lambda ds, s=session: s.predict(ds, pad_token_id=pad),
                                                       bundle.tokenizer)
    onnx, ov = exports.onnx, exports.openvino
    return ModelMeasurements(
        metrics=evaluations["pytorch"].metrics if evaluate else {},
        size_mb=file_size(artifact_dir / WEIGHTS_NAME) / MB if artifact_dir else stored["total"] / MB,
        size_mb_no_embeddings=stored["no_embeddings"] / MB,
        weights_mb=stored["total"] / MB,
        params=ParamCounts(**count_parameters(bundle.model)),
        flops=flops_per_example(bundle.model, FLOPS_SEQ_LEN),
        size_mb_onnx=(sum(file_size(p) for p in onnx.path.parent.glob("*.onnx")) if isinstance(onnx, SegmentsExport)
                      else file_size(onnx.path)) / MB if onnx is not None else None,
        onnx=OnnxInfo(fused_ops=onnx.fused_ops, transforms=tuple(onnx.transforms),
                      max_abs_logit_diff_vs_float=onnx.max_abs_diff, notes=tuple(onnx.notes)) if onnx else None,
        metrics_onnx=evaluations["onnxruntime"].metrics if "onnxruntime" in evaluations else None,
        size_mb_openvino=(file_size(ov.path) + file_size(ov.path.with_suffix(".bin"))) / MB if ov else None,
        openvino=OpenVinoInfo(precision=ov.precision, max_abs_logit_diff_vs_float=ov.max_abs_diff,
                              notes=tuple(ov.notes)) if ov else None,
        metrics_openvino=evaluations["openvino"].metrics if "openvino" in evaluations else None,
        precisions={"pytorch": "int8" if module_computes_in_int8(bundle.model) else "fp32",
                    **({"onnxruntime": "int8" if computes_in_int8(bundle) else "fp32"} if onnx else {}),
                    **({"openvino": ov.precision} if ov else {})},
    ), evaluations


def _session_for(bundle: ModelBundle, exported: OnnxExport | OpenVinoExport, runtime: str):
    """A session on the exported file (its directory: the ONNX file's, or the IR's parent's parent)."""
    directory = exported.path.parent.parent if runtime == "openvino" or isinstance(exported, SegmentsExport) \
        else exported.path.parent
    return open_session(bundle, directory, runtime)


def serving_runtime(recipe: Recipe, measured: ModelMeasurements, exports: Exports, shape: str) -> str:
    """The recipe's ``runtime``, else the fastest runtime measured at ``shape``, else the first exported fast one."""
    if recipe.runtime is not None:
        return recipe.runtime
    timed = {r: measured.latency(r, shape) for r in measured.latency_ms}
    timed = {r: v for r, v in timed.items() if v is not None}
    if timed:
        return min(timed, key=timed.get)
    return "onnxruntime" if exports.onnx else "openvino" if exports.openvino else "pytorch"


def build_report(baseline: ModelBundle, start: ModelBundle | None, recipe: Recipe, data: TaskDataset,
                 base_info: ModelMeasurements, comp_info: ModelMeasurements, steps: list[StepRecord],
                 claims: list[Claim], notes: list[str], threads: int, evaluate: bool = True,
                 stages: list[Stage] = (), serving: str | None = None, flags: list[str] = (),
                 peaks: dict[str, dict[str, float]] | None = None) -> ReportCard:
    """The report card of a run: the one place a :class:`~slimbert.report.card.ReportCard` is assembled."""
    return ReportCard(
        model=str(baseline.source),
        start_from=str(start.source) if start is not None else None,
        task=data.task.name,
        recipe=recipe.to_dict(),
        eval_examples={s: len(d) for s, d in data.eval_sets(baseline.tokenizer).items()} if evaluate else {},
        flops_seq_len=FLOPS_SEQ_LEN,
        baseline=base_info,
        compressed=comp_info,
        claims=tuple(claims),
        notes=tuple(notes),
        steps=tuple(steps),
        environment=Environment.current(threads),
        stages=tuple(stages),
        serving_runtime=serving,
        flags=tuple(flags),
        gemm_peaks=peaks or {},
    )


def load_start_model(spec: str | os.PathLike | ModelBundle, task_spec, teacher: ModelBundle) -> ModelBundle:
    """The model a recipe starts from when it is not the input model (``compress(start_from=...)``).

    Movement pruning learns which weights move away from zero while the model learns the task, so
    Sanh et al. start from the *pretrained* checkpoint and distil from a separately fine-tuned
    teacher; starting from the teacher itself leaves the distillation gradient near zero and the
    movement scores close to their random start. The two models must share a vocabulary, since the
    teacher reads the student's token ids.
    """
    start = spec if isinstance(spec, ModelBundle) else load_model(spec, task_spec)
    check_head_matches_task(start.model.config, task_spec, f"start_from {start.source}")
    if start.tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
        raise SlimbertError(
            f"start_from {start.source} has a different vocabulary from the input model {teacher.source}: the teacher "
            "would read the student's token ids wrongly. Start from the checkpoint the input model was fine-tuned "
            "from (same tokenizer)."
        )
    return start


def _prepare_output(out: Path, overwrite: bool, inputs: list, fingerprint: dict) -> tuple[Path, Path]:
    """Staging and work directories beside ``out`` (called with ``out`` locked). ``overwrite`` replaces only
    a slimbert artifact that does not hold an input, and discards resumable work; without it, resumable
    work is kept only for the same run (``fingerprint``)."""
    if out.exists() and not overwrite:
        raise SlimbertError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    work_dir = sibling(out, ".work")
    if overwrite:
        check_replaceable(out, inputs, (out / MANIFEST_NAME).is_file())
        shutil.rmtree(work_dir, ignore_errors=True)
    check_fingerprint(work_dir, fingerprint, "the resumable work of this compression")
    staging = sibling(out, ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging, work_dir


def has_checkpoints(work_dir: Path) -> bool:
    """Whether a training run under ``work_dir`` left a checkpoint a rerun can resume from."""
    return any(work_dir.glob("**/checkpoints/LATEST"))


def _publish(staging: Path, out: Path) -> None:
    """Move the finished staging directory to ``out`` (replacing an old one only now)."""
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def compress(model: str | os.PathLike | ModelBundle, task: str, recipe: str | os.PathLike | Recipe,
             out: str | os.PathLike, *, settings: RunSettings = RunSettings(), text_cols=None, label_col=None,
             regression: bool = False, latency: bool = True, latency_grid=DEFAULT_GRID, threads: int = 2,
             latency_budget_s: float = 20.0, export: bool = True, evaluate: bool = True, overwrite: bool = False,
             start_from: str | os.PathLike | ModelBundle | None = None,
             log: Callable[[str], None] = print) -> CompressionResult:
    """Compress ``model`` on ``task`` with ``recipe``; write artifact + ONNX + report to ``out``.

    ``evaluate=False`` skips accuracy (shape-only runs on random weights: size and latency do
    not depend on weight values). ``start_from`` (e.g. ``minilm-l6``, the pretrained checkpoint)
    makes the recipe start from that model instead of ``model``, which stays the teacher and the
    baseline of the report (Sanh et al.'s setting for movement pruning; see :func:`load_start_model`).
    """
    recipe = load_recipe(recipe)  # a malformed recipe fails before anything else runs
    out = Path(out)
    settings.validate()
    check_writable(out)
    task_spec = get_task(task, text_cols=text_cols, label_col=label_col, regression=regression)
    data = TaskDataset(task_spec, settings)
    task_spec = data.task
    seed_everything(settings.seed)  # a new classification head is drawn here
    baseline = model if isinstance(model, ModelBundle) else load_model(model, task_spec)
    start = load_start_model(start_from, task_spec, baseline) if start_from is not None else None
    # What can be checked before any work: step order, step options, each step against the model's shape.
    first = shape_of((start or baseline).model)
    recipe.check(first, teacher=shape_of(baseline.model))
    settings, seq_note = settings.for_model(first.max_positions, str((start or baseline).source))
    if seq_note:
        log(seq_note)
    data.settings = settings
    if evaluate:
        data.eval_sets(baseline.tokenizer)  # missing data fails now, not after an hour of work
    inputs = [spec for spec in (model, start_from) if spec is not None and not isinstance(spec, ModelBundle)]
    fingerprint = {"model": _identity(model), "start_from": _identity(start_from) if start_from is not None else None,
                   "task": task_spec.name, "recipe": recipe.to_dict(), **settings.training_fields()}
    if not is_main_process():  # under `accelerate launch`: train with the others; the main process writes
        compressed, _, _ = run_recipe(start if start is not None else baseline.clone(), recipe, data, settings,
                                      sibling(out, ".work"), lambda m: None, teacher=baseline.clone())
        wait_for_everyone()
        return CompressionResult(out_dir=out, report=load_card(out / "report.json"), bundle=load_compressed(out))
    with OutputLock(out):
        staging, work_dir = _prepare_output(out, overwrite, inputs, fingerprint)
        result = _compress_locked(baseline, start, recipe, data, settings, out, staging, work_dir, latency=latency,
                                  latency_grid=latency_grid, threads=threads, latency_budget_s=latency_budget_s,
                                  export=export, evaluate=evaluate, notes=[seq_note] if seq_note else [], log=log)
    wait_for_everyone()
    return result


def _identity(spec: str | os.PathLike | ModelBundle) -> str:
    return spec.source if isinstance(spec, ModelBundle) else model_identity(spec)


def _compress_locked(baseline: ModelBundle, start: ModelBundle | None, recipe: Recipe, data: TaskDataset,
                     settings: RunSettings, out: Path, staging: Path, work_dir: Path, *, latency: bool, latency_grid,
                     threads: int, latency_budget_s: float, export: bool, evaluate: bool, notes: list[str],
                     log: Callable[[str], None]) -> CompressionResult:
    """The work of :func:`compress`, with ``out`` locked: measure, run the recipe, export, measure, publish."""
    task_spec = data.task
    completed = False
    try:
        log(f"measuring the baseline ({baseline.source})")
        base_dir = work_dir / "baseline"
        save_compressed(baseline, base_dir)
        base_exports = export_runtimes(baseline, base_dir, data) if export else Exports()
        base_info, base_evals = describe(baseline, base_dir, base_exports, data, evaluate)

        start_note = None
        if start is not None:
            start_note = (f"the recipe started from {start.source}, not from the baseline model; the baseline "
                          "was the teacher of its distillation steps")
            log(start_note)
        compressed, steps, ctx = run_recipe(start if start is not None else baseline.clone(), recipe, data, settings,
                                            work_dir, log, teacher=baseline.clone(), stage_latency=latency)
        save_compressed(compressed, staging, extra={"task": task_spec.name, "recipe": recipe.to_dict()})
        comp_exports = export_runtimes(compressed, staging, data) if export else Exports()
        notes = ([start_note] if start_note else []) + notes + list(ctx.notes) + comp_exports.notes
        # Measure the artifact as saved: reloading proves it runs.
        reloaded = load_compressed(staging)
        comp_info, comp_evals = describe(reloaded, staging, comp_exports, data, evaluate)

        peaks: dict[str, dict[str, float]] = {}
        if latency:
            log("timing latency (interleaved runs)")
            names = baseline.arch.inputs
            vocab = baseline.model.config.vocab_size

            def target(name, bundle, exports):
                onnx = exports.onnx if isinstance(exports.onnx, OnnxExport) else None  # segments: timed elsewhere
                return LatencyTarget(name, bundle.model, str(onnx.path) if onnx else None, names, vocab,
                                     str(exports.openvino.path) if exports.openvino else None)

            if AdaptiveSettings.from_dict(reloaded.adaptive).active:
                notes.append("latency here is the full-depth static path on random tokens (exits and dropping depend "
                             "on the input); the adaptive speed on real sentences: `slimbert bench adaptive`")

            timings = measure_latency([target("baseline", baseline, base_exports),
                                       target("compressed", reloaded, comp_exports)],
                                      grid=latency_grid, threads=threads, budget_s=latency_budget_s, progress=log)
            seqs = {seq for _, seq in latency_grid}
            base_info = replace(base_info, latency_ms=timings["baseline"],
                                flops_at={str(s): flops_per_example(baseline.model, s) for s in seqs})
            comp_info = replace(comp_info, latency_ms=timings["compressed"],
                                flops_at={str(s): flops_per_example(reloaded.model, s) for s in seqs})
            log("measuring each runtime's matrix-product peak (the compute floor)")
            peaks = gemm_peaks(threads)

        serving = serving_runtime(recipe, comp_info, comp_exports, grid_key(*latency_grid[0]))
        flags = []
        if serving in comp_evals and serving in base_evals:
            flags = degenerate_flags(comp_evals[serving], task_spec.main_metric, base_evals[serving])
        write_manifest_fields(staging, {"serving_runtime": serving})
        report = build_report(baseline, start, recipe, data, base_info, comp_info, steps, ctx.claims, notes, threads,
                              evaluate, stages=ctx.stages, serving=serving, flags=flags, peaks=peaks)
        report.save(staging / "report.json")
        (staging / "report.md").write_text(render_markdown(report))
        (staging / "report.html").write_text(render_card_html(report), encoding="utf-8")
        _publish(staging, out)
        completed = True
    finally:
        if not completed:
            shutil.rmtree(staging, ignore_errors=True)
            if has_checkpoints(work_dir):
                log(f"compression did not finish; resumable work kept in {work_dir} (rerun the same command to "
                    "resume, or pass --overwrite to start over)")
            else:  # nothing a rerun could resume: leave nothing hidden behind
                shutil.rmtree(work_dir, ignore_errors=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    return CompressionResult(out_dir=out, report=report, bundle=reloaded)
