"""What a recipe step gets besides the model: task data, run settings, a work directory, the teacher.

Methods never load data or build training loops themselves: they ask the :class:`StepContext`
(``ctx.train(...)`` runs the one training loop on the task's data with the run's settings).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from slimbert.data.encoding import EncodedDataset, encode
from slimbert.data.loaders import TaskData
from slimbert.data.tasks import TaskSpec
from slimbert.errors import SlimbertError
from slimbert.training.config import TrainConfig
from slimbert.training.evaluate import evaluate

if TYPE_CHECKING:
    from slimbert.models.bundle import ModelBundle
    from slimbert.training.callbacks import Callback
    from slimbert.training.loop import TrainResult
    from slimbert.training.losses import LossTerm

SUBSET_SEED = 0  # training subsets (--max-train-samples) are the same whatever the training seed


@dataclass(frozen=True)
class RunSettings:
    """Knobs shared by ``finetune``, ``eval`` and ``compress``: a quick run is one flag away."""

    data_dir: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    seed: int = 42
    max_seq_len: int = 128
    batch_size: int | None = None
    learning_rate: float | None = None

    def train_config(self, base: TrainConfig | None = None) -> TrainConfig:
        """``base`` (a method's defaults) with the command-line overrides applied."""
        cfg = base or TrainConfig()
        overrides: dict[str, Any] = {"seed": self.seed}
        for name in ("epochs", "max_steps", "batch_size", "learning_rate"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        cfg = replace(cfg, **overrides)
        cfg.validate()
        return cfg


class TaskDataset:
    """A task's examples, tokenized per tokenizer and truncated/subsampled per the run settings."""

    def __init__(self, task: TaskSpec, settings: RunSettings):
        self.settings = settings
        self.data = TaskData(task, settings.data_dir)
        self._encoded: dict[tuple[int, str], Any] = {}

    @property
    def task(self) -> TaskSpec:
        return self.data.task

    def train_examples(self) -> list:
        """The training examples, subsampled (seeded, independent of the training seed) per --max-train-samples."""
        examples = list(self.data.examples("train"))
        n = self.settings.max_train_samples
        if n is not None and n < len(examples):
            random.Random(SUBSET_SEED).shuffle(examples)
            examples = examples[:n]
        return examples

    def train_set(self, tokenizer) -> EncodedDataset:
        key = (id(tokenizer), "train")
        if key not in self._encoded:
            self._encoded[key] = encode(self.train_examples(), tokenizer, self.settings.max_seq_len)
        return self._encoded[key]

    def eval_sets(self, tokenizer) -> dict[str, EncodedDataset]:
        key = (id(tokenizer), "eval")
        if key not in self._encoded:
            n = self.settings.max_eval_samples
            self._encoded[key] = {
                split: encode(self.data.examples(split)[:n] if n else self.data.examples(split), tokenizer,
                              self.settings.max_seq_len)
                for split in self.data.eval_splits()
            }
        return self._encoded[key]

    def evaluate(self, model, tokenizer, batch_size: int = 128) -> dict[str, float]:
        return evaluate(model, self.task, self.eval_sets(tokenizer), batch_size, tokenizer.pad_token_id or 0)


@dataclass
class Claim:
    """Whether a gain is realized on a runtime or only simulated there, and why."""

    gain: str  # "size" | "speed"
    runtime: str  # "disk" | "pytorch" | "onnxruntime"
    realized: bool
    detail: str


@dataclass
class StepContext:
    data: TaskDataset
    settings: RunSettings
    work_dir: Path
    teacher: "ModelBundle | None" = None
    step_index: int = 0
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # One entry per training run of the current step: steps and training seconds summed over resumes.
    training_runs: list[dict[str, Any]] = field(default_factory=list)
    _baseline_metrics: dict[str, float] | None = field(default=None, repr=False)

    @property
    def task(self) -> TaskSpec:
        return self.data.task

    def baseline_metrics(self) -> dict[str, float]:
        """Task metrics of the recipe's input model (``teacher``), evaluated once per run and cached;
        what accuracy gates compare with."""
        if self.teacher is None:
            raise SlimbertError("no input model to compare with: this step context has no teacher")
        if self._baseline_metrics is None:
            self._baseline_metrics = self.data.evaluate(self.teacher.model, self.teacher.tokenizer)
        return self._baseline_metrics

    def claim(self, gain: str, runtime: str, realized: bool, detail: str) -> None:
        self.claims.append(Claim(gain, runtime, realized, detail))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def train(self, bundle: "ModelBundle", cfg: TrainConfig, *, loss_terms: "Sequence[LossTerm] | None" = None,
              callbacks: "Sequence[Callback]" = (), name: str = "train", description: str | None = None,
              train_set: EncodedDataset | None = None, evaluate: bool = True) -> "TrainResult":
        """Run the one training loop on the task's training split (or ``train_set``), evaluating on its
        dev split (``evaluate=False``: no evaluation, the last weights are kept)."""
        from slimbert.training.loop import train
        from slimbert.training.losses import TaskLoss

        task = self.task
        tokenizer = bundle.tokenizer
        result = train(
            bundle.model,
            train_set if train_set is not None else self.data.train_set(tokenizer),
            cfg,
            self.work_dir / name,
            loss_terms=list(loss_terms) if loss_terms is not None else [TaskLoss(task.is_regression)],
            callbacks=callbacks,
            evaluator=(lambda m: self.data.evaluate(m, tokenizer, cfg.eval_batch_size)) if evaluate else None,
            main_metric=task.main_metric,
            pad_token_id=tokenizer.pad_token_id or 0,
            regression=task.is_regression,
            description=description or name,
        )
        self.training_runs.append({"name": name, "steps": result.steps,
                                   "train_seconds": round(result.state.train_seconds, 3)})
        return result
