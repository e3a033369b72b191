"""What a recipe step gets besides the model: task data, run settings, a work directory, the teacher.

Methods never load data or build training loops themselves: they ask the :class:`StepContext`
(``ctx.train(...)`` runs the one training loop on the task's data with the run's settings, and with
the step's ``distill:`` block, when it has one, turned into loss terms here, once for every method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from slimbert.data.encoding import EncodedDataset
from slimbert.data.tasks import TaskSpec
from slimbert.errors import ConfigError, SlimbertError, TrainingDiverged
from slimbert.report.card import Claim
from slimbert.steps.teacher import StepDistillation
from slimbert.training.config import TrainConfig
from slimbert.training.losses import TaskLoss
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

if TYPE_CHECKING:
    from slimbert.models.bundle import ModelBundle
    from slimbert.training.callbacks import Callback
    from slimbert.training.loop import TrainResult
    from slimbert.training.losses import LossTerm


@dataclass
class StepContext:
    data: TaskDataset
    settings: RunSettings
    work_dir: Path
    teacher: "ModelBundle | None" = None
    step_index: int = 0
    step_method: str = ""
    # The current step's `distill:` block (None: train on the task's labels only).
    distillation: StepDistillation | None = None
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

    def train(self, bundle: "ModelBundle", cfg: TrainConfig, *, extra_terms: "Sequence[LossTerm]" = (),
              loss_terms: "Sequence[LossTerm] | None" = None, callbacks: "Sequence[Callback]" = (),
              name: str = "train", description: str | None = None, train_set: EncodedDataset | None = None,
              evaluate: bool = True) -> "TrainResult":
        """Run the one training loop on the task's training split (or ``train_set``), evaluating on its
        dev split (``evaluate=False``: no evaluation, the last weights are kept).

        The loss is the step's: distillation from the teacher when the step has a ``distill:`` block,
        else the task loss; then ``extra_terms`` (e.g. a sparsity penalty). A method that defines the
        whole loss itself (``method: distill``) passes ``loss_terms`` instead. ``cfg`` gets the run's
        command-line overrides (``--epochs``, ``--max-steps``, ...).
        """
        from slimbert.training.loop import train

        teacher_term = None
        if loss_terms is None:
            teacher_term, terms = self._step_loss(bundle)
            loss_terms = terms + list(extra_terms)
        elif extra_terms:
            raise ValueError("pass either loss_terms (the whole loss) or extra_terms (added to the step's loss)")
        cfg = self.settings.train_config(cfg)
        task, tokenizer = self.task, bundle.tokenizer
        try:
            result = train(
                bundle.model,
                train_set if train_set is not None else self.data.train_set(tokenizer),
                cfg,
                self.work_dir / name,
                loss_terms=list(loss_terms),
                callbacks=callbacks,
                evaluator=(lambda m: self.data.evaluate(m, tokenizer, cfg.eval_batch_size)) if evaluate else None,
                main_metric=task.main_metric,
                pad_token_id=tokenizer.pad_token_id or 0,
                regression=task.is_regression,
                description=description or name,
            )
        except TrainingDiverged as exc:
            raise exc.within(f"recipe step {self.step_index + 1}: {self.step_method}") from None
        finally:
            if teacher_term is not None:
                teacher_term.close()
        self.training_runs.append({"name": name, "steps": result.steps,
                                   "train_seconds": round(result.state.train_seconds, 3)})
        return result

    def _step_loss(self, bundle: "ModelBundle") -> tuple[Any, list["LossTerm"]]:
        regression = self.task.is_regression
        if self.distillation is None:
            return None, [TaskLoss(regression)]
        if self.teacher is None:
            raise ConfigError("this step distils from the recipe's input model (a distill: block), but it has "
                              "no teacher; run it through a recipe, or remove the distill: block")
        return self.distillation.loss_terms(self.teacher.model, bundle.model, regression)
