"""``slimbert finetune``: fine-tune a model on a task and write a reusable teacher directory.

The output directory is a plain Hugging Face model directory (config, safetensors weights,
tokenizer) plus ``training_summary.json``, written last: its presence means "finished", and a
rerun of the same command then reuses the model instead of training again. While training,
resumable checkpoints live in ``OUT/.run``; after an interruption (Ctrl-C, kill -9) the same
command continues from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from slimbert.data.tasks import get_task
from slimbert.errors import SlimbertError
from slimbert.models.loading import load_model, model_identity
from slimbert.models.shape import shape_of_spec
from slimbert.outdir import OutputLock, check_fingerprint, check_replaceable, check_writable, describe_mismatch
from slimbert.report.card import Environment
from slimbert.report.training_summary import TrainingSummary
from slimbert.training.config import TrainConfig
from slimbert.training.distributed import is_main_process, wait_for_everyone
from slimbert.training.loop import train
from slimbert.training.losses import TaskLoss
from slimbert.training.seeding import seed_everything
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

SUMMARY_NAME = "training_summary.json"
RUN_DIR = ".run"


def finished_summary(out: Path) -> TrainingSummary | None:
    path = out / SUMMARY_NAME
    return TrainingSummary.from_dict(json.loads(path.read_text()), str(path)) if path.is_file() else None


def finetune(model: str, task: str, out: str | os.PathLike, settings: RunSettings = RunSettings(), *,
             train_config: TrainConfig | None = None, text_cols=None, label_col=None, regression: bool = False,
             overwrite: bool = False, log=print) -> TrainingSummary:
    """Fine-tune ``model`` on ``task`` into ``out``; return the training summary.

    Everything is checked before anything is written or deleted: the output's writability, the model,
    the task data, and (``overwrite``) that ``out`` is a slimbert output that does not hold the input.
    One run at a time holds ``out``; a finished or interrupted ``out`` is reused or resumed only by the
    same command (same model, task and training settings).
    """
    out = Path(out)
    settings.validate()
    check_writable(out)
    task_spec = get_task(task, text_cols=text_cols, label_col=label_col, regression=regression)
    data = TaskDataset(task_spec, settings)
    task_spec = data.task  # custom tasks read their label set here
    settings, note = settings.for_model(shape_of_spec(model).max_positions, str(model))
    if note:
        log(note)
    data.settings = settings
    cfg = settings.train_config(train_config)
    fingerprint = run_fingerprint(model, task_spec.name, settings, cfg)
    main = is_main_process()  # under `accelerate launch` every process trains; the main one writes
    with OutputLock(out) if main else nullcontext():
        summary = finished_summary(out)
        if summary is not None and not overwrite:
            describe_mismatch(summary.fingerprint or fingerprint, fingerprint, f"the fine-tuned model in {out}")
            log(f"{out} already holds this fine-tuned model ({SUMMARY_NAME}); reusing it. Pass --overwrite to train "
                "again.")
            return summary
        seed_everything(settings.seed)  # a new classification head is drawn from here
        bundle = load_model(model, task_spec)
        train_set = data.train_set(bundle.tokenizer)
        eval_sets = data.eval_sets(bundle.tokenizer)  # load now: a missing dev split fails before training
        if main:
            if overwrite and out.exists():
                check_replaceable(out, [model], is_finetune_output(out))
                shutil.rmtree(out)
            if out.exists() and not is_finetune_output(out) and any(out.iterdir()):
                raise SlimbertError(f"{out} exists and is not a slimbert fine-tuning directory; choose another --out")
            check_fingerprint(out / RUN_DIR, fingerprint, "the interrupted fine-tuning")
        wait_for_everyone()
        log(f"fine-tuning {model} on {task_spec.name}: {len(train_set)} training examples, "
            f"{', '.join(f'{k} {len(v)}' for k, v in eval_sets.items())} evaluation examples")
        return _train_and_save(bundle, data, train_set, cfg, settings, out, model, task_spec, fingerprint)


def is_finetune_output(out: Path) -> bool:
    return (out / SUMMARY_NAME).is_file() or (out / RUN_DIR).is_dir()


def run_fingerprint(model: str, task: str, settings: RunSettings, cfg: TrainConfig) -> dict:
    """What a fine-tuning run is keyed by: model, task and every setting that changes the weights."""
    train_cfg = {k: v for k, v in asdict(cfg).items() if k not in ("eval_batch_size", "log_every")}
    return {"model": model_identity(model), "task": task, **settings.training_fields(), "train_config": train_cfg}


def _train_and_save(bundle, data, train_set, cfg, settings, out, model, task_spec, fingerprint) -> TrainingSummary:
    started = time.perf_counter()
    result = train(
        bundle.model, train_set, cfg, out / RUN_DIR,
        loss_terms=[TaskLoss(task_spec.is_regression)],
        evaluator=lambda m: data.evaluate(m, bundle.tokenizer, cfg.eval_batch_size),
        main_metric=task_spec.main_metric,
        pad_token_id=bundle.tokenizer.pad_token_id or 0,
        regression=task_spec.is_regression,
        description=f"fine-tune {task_spec.name}",
    )
    metrics = data.evaluate(bundle.model, bundle.tokenizer, cfg.eval_batch_size)
    main = is_main_process()
    # Write the model, then the summary last: the summary marks the directory as finished.
    if main:
        bundle.model.save_pretrained(out)
        bundle.tokenizer.save_pretrained(out)
    summary = TrainingSummary(
        model=str(model),
        task=task_spec.name,
        metrics=metrics,
        main_metric=task_spec.main_metric,
        steps=result.steps,
        best_step=result.state.best_step,
        train_examples=len(train_set),
        train_seconds=round(result.state.train_seconds, 1),
        wall_seconds_this_run=round(time.perf_counter() - started, 1),
        resumed_from_step=result.resumed_from_step,
        train_config=cfg,
        settings=settings,
        eval_history=tuple(result.state.eval_history),
        environment=Environment.current(),
        fingerprint=fingerprint,
    )
    if main:
        summary.save(out / SUMMARY_NAME)
        shutil.rmtree(out / RUN_DIR, ignore_errors=True)
    wait_for_everyone()
    return summary
