"""Shared builders of the pruning tests: a step context on the tiny GLUE data, a tiny model with its teacher."""

from __future__ import annotations

from pathlib import Path

from slimbert.data.tasks import get_task
from slimbert.models.bundle import ModelBundle
from slimbert.models.loading import load_model
from slimbert.steps.context import StepContext
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def step_context(tiny_glue: Path, work_dir: Path) -> StepContext:
    """SST-2 (synthetic), 96 training and 32 dev examples."""
    settings = RunSettings(data_dir=str(tiny_glue), max_eval_samples=32, max_train_samples=96)
    return StepContext(TaskDataset(get_task("sst2"), settings), settings, work_dir)


def tiny_bundle(model_dir: Path, ctx: StepContext) -> ModelBundle:
    """The tiny model; a copy becomes the context's teacher (the recipe's input model)."""
    bundle = load_model(model_dir, ctx.task)
    ctx.teacher = bundle.clone()
    return bundle
