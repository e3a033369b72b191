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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from slimbert.data.tasks import get_task
from slimbert.errors import SlimbertError
from slimbert.export.onnx import OnnxExport, export_onnx, onnx_session, predict_onnx
from slimbert.measure.flops import flops_per_example
from slimbert.measure.latency import DEFAULT_GRID, LatencyTarget, measure_latency
from slimbert.measure.size import MB, count_parameters, file_size, weight_bytes
from slimbert.methods import get_method
from slimbert.models.artifact import MANIFEST_NAME, ONNX_NAME, WEIGHTS_NAME, load_compressed, save_compressed
from slimbert.models.bundle import ModelBundle
from slimbert.models.loading import check_head_matches_task, load_model, model_identity
from slimbert.models.shape import shape_of
from slimbert.outdir import OutputLock, check_fingerprint, check_replaceable, check_writable, sibling
from slimbert.recipe import Recipe, load_recipe
from slimbert.report.card import (
    Claim,
    Environment,
    ModelMeasurements,
    OnnxInfo,
    ParamCounts,
    ReportCard,
    StepRecord,
    TrainingRun,
    load_card,
)
from slimbert.report.markdown import render_markdown
from slimbert.steps.context import StepContext
from slimbert.training.distributed import is_main_process, wait_for_everyone
from slimbert.training.evaluate import metrics_from_logits
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
               log: Callable[[str], None] = print,
               teacher: ModelBundle | None = None) -> tuple[ModelBundle, list[StepRecord], StepContext]:
    """Apply each step of ``recipe`` in order; return the model, a record of the steps and the context.

    The steps' teacher (distillation, accuracy gates) is ``teacher``, by default a copy of ``bundle``.
    """
    teacher = teacher if teacher is not None else bundle.clone()
    steps = []
    ctx = StepContext(data=data, settings=settings, work_dir=work_dir, teacher=teacher)
    for i, step in enumerate(recipe.steps):
        method = get_method(step.method)
        ctx.step_index, ctx.step_method = i, step.method
        seed_everything(settings.seed + i)  # new parameters a step creates (students, heads) follow --seed
        ctx.distillation = step.distill
        ctx.work_dir = work_dir / f"step{i}-{step.method}"
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        log(f"step {i + 1}/{len(recipe.steps)}: {step.method}")
        started = time.perf_counter()
        ctx.training_runs = []
        bundle = method.apply(bundle, step.config, ctx)
        # "seconds" is this process's wall time; "training" sums each run's time over resumes.
        record = StepRecord(method=step.method, family=method.family, config=step.fields(),
                            seconds=round(time.perf_counter() - started, 2),
                            training=tuple(TrainingRun(**run) for run in ctx.training_runs))
        bundle.history.append({"method": step.method, "config": record.config})
        steps.append(record)
    ctx.work_dir = work_dir
    return bundle, steps, ctx


def describe(bundle: ModelBundle, artifact_dir: Path | None, onnx: OnnxExport | None, data: TaskDataset,
             evaluate: bool = True) -> ModelMeasurements:
    """Metrics, sizes, parameters and FLOPs of a model (latency is added separately).

    ``evaluate=False`` skips task metrics (for shape-only benchmarks on random weights).
    """
    tokenizer = bundle.tokenizer
    stored = weight_bytes(bundle.model)
    onnx_info = metrics_onnx = None
    if onnx is not None:
        onnx_info = OnnxInfo(fused_ops=onnx.fused_ops, transforms=tuple(onnx.transforms),
                             max_abs_logit_diff_vs_float=onnx.max_abs_diff, notes=tuple(onnx.notes))
        if evaluate:
            session = onnx_session(onnx.path)
            eval_sets = data.eval_sets(tokenizer)
            logits = {s: predict_onnx(session, ds, pad_token_id=tokenizer.pad_token_id or 0) for s, ds in eval_sets.items()}
            metrics_onnx = metrics_from_logits(data.task, logits, eval_sets)
    return ModelMeasurements(
        metrics=data.evaluate(bundle.model, tokenizer) if evaluate else {},
        size_mb=file_size(artifact_dir / WEIGHTS_NAME) / MB if artifact_dir else stored["total"] / MB,
        size_mb_no_embeddings=stored["no_embeddings"] / MB,
        weights_mb=stored["total"] / MB,
        params=ParamCounts(**count_parameters(bundle.model)),
        flops=flops_per_example(bundle.model, FLOPS_SEQ_LEN),
        size_mb_onnx=file_size(onnx.path) / MB if onnx is not None else None,
        onnx=onnx_info,
        metrics_onnx=metrics_onnx,
    )


def build_report(baseline: ModelBundle, start: ModelBundle | None, recipe: Recipe, data: TaskDataset,
                 base_info: ModelMeasurements, comp_info: ModelMeasurements, steps: list[StepRecord],
                 claims: list[Claim], notes: list[str], threads: int, evaluate: bool = True) -> ReportCard:
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
        base_onnx = export_onnx(baseline, base_dir / ONNX_NAME) if export else None
        base_info = describe(baseline, base_dir, base_onnx, data, evaluate)

        start_note = None
        if start is not None:
            start_note = (f"the recipe started from {start.source}, not from the baseline model; the baseline "
                          "was the teacher of its distillation steps")
            log(start_note)
        compressed, steps, ctx = run_recipe(start if start is not None else baseline.clone(), recipe, data, settings,
                                            work_dir, log, teacher=baseline.clone())
        save_compressed(compressed, staging, extra={"task": task_spec.name, "recipe": recipe.to_dict()})
        comp_onnx = None
        notes = ([start_note] if start_note else []) + notes + list(ctx.notes)
        if export:
            try:
                comp_onnx = export_onnx(compressed, staging / ONNX_NAME)
                notes += comp_onnx.notes
            except Exception as exc:  # an exotic module may not export; the PyTorch artifact still stands
                notes.append(f"ONNX export failed ({type(exc).__name__}: {exc}); no ONNX Runtime artifact")
        # Measure the artifact as saved: reloading proves it runs.
        reloaded = load_compressed(staging)
        comp_info = describe(reloaded, staging, comp_onnx, data, evaluate)

        if latency:
            log("timing latency (interleaved runs)")
            names = baseline.arch.inputs
            vocab = baseline.model.config.vocab_size
            timings = measure_latency(
                [LatencyTarget("baseline", baseline.model, str(base_onnx.path) if base_onnx else None, names, vocab),
                 LatencyTarget("compressed", reloaded.model, str(comp_onnx.path) if comp_onnx else None, names, vocab)],
                grid=latency_grid, threads=threads, budget_s=latency_budget_s, progress=log)
            base_info = replace(base_info, latency_ms=timings["baseline"])
            comp_info = replace(comp_info, latency_ms=timings["compressed"])

        report = build_report(baseline, start, recipe, data, base_info, comp_info, steps, ctx.claims, notes, threads,
                              evaluate)
        report.save(staging / "report.json")
        (staging / "report.md").write_text(render_markdown(report))
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
