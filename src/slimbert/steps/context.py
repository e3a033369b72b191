"""What a recipe step gets besides the model: task data, run settings, a work directory, the teacher.

Methods never load data or build training loops themselves: they ask the :class:`StepContext`
(``ctx.train(...)`` runs the one training loop on the task's data with the run's settings, and with
the step's ``distill:`` block, when it has one, turned into loss terms here, once for every method).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from slimbert.data.encoding import EncodedDataset
from slimbert.data.tasks import TaskSpec
from slimbert.errors import ConfigError, SlimbertError, TrainingDiverged
from slimbert.report.card import Claim, GateOutcome, Stage
from slimbert.steps.gate import DEFAULT_GATE_RUNTIME, StepGate, evaluate_on
from slimbert.steps.teacher import StepDistillation
from slimbert.training.config import TrainConfig
from slimbert.training.evaluate import Evaluation, degenerate_flags
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
    # The current step's accuracy gate (None: none), checked on gate_runtime; its last outcome and flags.
    gate: StepGate | None = None
    gate_runtime: str = DEFAULT_GATE_RUNTIME
    gate_outcome: GateOutcome | None = None
    gate_flags: list[str] = field(default_factory=list)
    # The model before the current step, evaluated on the gate runtime (what gate_against: previous compares with).
    previous_evaluation: Evaluation | None = None
    claims: list[Claim] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)  # the model after each step (the report's waterfall)
    notes: list[str] = field(default_factory=list)
    # One entry per training run of the current step: steps and training seconds summed over resumes.
    training_runs: list[dict[str, Any]] = field(default_factory=list)
    _baseline_metrics: dict[str, float] | None = field(default=None, repr=False)
    _input_evaluations: dict[str, Evaluation] = field(default_factory=dict, repr=False)

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

    def input_evaluation(self, runtime: str) -> Evaluation:
        """The recipe's input model (``teacher``) evaluated on ``runtime``, once per run."""
        if self.teacher is None:
            raise SlimbertError("no input model to compare with: this step context has no teacher")
        if runtime not in self._input_evaluations:
            self._input_evaluations[runtime] = evaluate_on(self.teacher, self.data, runtime, self.work_dir / "gate")
        return self._input_evaluations[runtime]

    def check_gate(self, bundle: "ModelBundle", fallback: str | None = None) -> GateOutcome:
        """Evaluate ``bundle`` on the gate runtime against the gate's reference; record and return the outcome.
        A degenerate model fails the gate whatever its drop (``gate_flags`` say why)."""
        gate = self.gate
        if gate is None:
            raise SlimbertError("this step has no accuracy gate (max_metric_drop)")
        metric = self.task.main_metric
        reference = (self.previous_evaluation if gate.gate_against == "previous" and self.previous_evaluation
                     else self.input_evaluation(self.gate_runtime))
        evaluation = evaluate_on(bundle, self.data, self.gate_runtime, self.work_dir / "gate")
        self.gate_flags = degenerate_flags(evaluation, metric, reference)
        outcome = GateOutcome(metric=metric, runtime=self.gate_runtime, against=gate.gate_against,
                              reference=reference.metrics[metric], value=evaluation.metrics[metric],
                              max_drop=gate.max_metric_drop, passed=False, fallback=fallback)
        outcome = replace(outcome, passed=outcome.drop <= gate.max_metric_drop and not self.gate_flags)
        self.gate_outcome = outcome
        return outcome

    def gate_error(self, outcome: GateOutcome, how: str) -> SlimbertError:
        """The error of a failed gate: what was measured, and what to do (``how``)."""
        what = (f"accuracy gate failed on {outcome.runtime}: {outcome.metric} {outcome.reference * 100:.2f} "
                f"({'input model' if outcome.against == 'input' else 'previous step'}) -> {outcome.value * 100:.2f} "
                f"({-outcome.drop:+.2f} points, max drop {outcome.max_drop})")
        if self.gate_flags:
            what += "; " + "; ".join(self.gate_flags)
        return SlimbertError(f"{what}. {how}")

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
