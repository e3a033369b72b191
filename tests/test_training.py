"""The one training loop: learning, schedules, accumulation, best checkpoint, resume."""

from __future__ import annotations

import pytest
import torch

from slimbert.data.tasks import get_task
from slimbert.models.loading import load_model
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig
from slimbert.training.loop import linear_schedule, train
from slimbert.training.losses import TaskLoss
from slimbert.training.sampler import EpochBatchSampler, batch_order
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def _setup(tiny_bert_dir, tiny_glue, task="sst2", max_train=None):
    torch.manual_seed(0)  # the new classification head is random: same seed, same start
    settings = RunSettings(data_dir=str(tiny_glue), max_train_samples=max_train)
    data = TaskDataset(get_task(task), settings)
    bundle = load_model(tiny_bert_dir, data.task)
    return bundle, data


def _train(bundle, data, run_dir, cfg, callbacks=(), evaluator=True):
    return train(bundle.model, data.train_set(bundle.tokenizer), cfg, run_dir,
                 loss_terms=[TaskLoss(data.task.is_regression)], callbacks=callbacks,
                 evaluator=(lambda m: data.evaluate(m, bundle.tokenizer)) if evaluator else None,
                 main_metric=data.task.main_metric, regression=data.task.is_regression)


def test_linear_schedule_values():
    f = linear_schedule(warmup_steps=10, total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == 0.0


def test_batch_order_is_deterministic_grouped_and_complete():
    lengths = [(i * 7) % 50 + 1 for i in range(1000)]
    a = batch_order(lengths, 16, seed=1, epoch=0)
    assert a == batch_order(lengths, 16, seed=1, epoch=0)
    assert a != batch_order(lengths, 16, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(1000))
    # Grouping keeps padding low: within-batch length spread far below the global spread.
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    assert spread < 10
    sampler = EpochBatchSampler(lengths, 16, seed=1)
    sampler.set_position(epoch=0, skip=5)
    assert list(sampler) == a[5:]


def test_tiny_model_learns(tiny_bert_dir, tiny_glue, tmp_path):
    bundle, data = _setup(tiny_bert_dir, tiny_glue)
    before = data.evaluate(bundle.model, bundle.tokenizer)["accuracy"]
    cfg = TrainConfig(learning_rate=3e-3, epochs=6, batch_size=16, warmup_ratio=0.1, eval_every=16)
    result = _train(bundle, data, tmp_path / "run", cfg)
    after = data.evaluate(bundle.model, bundle.tokenizer)["accuracy"]
    assert after >= 0.9 > before + 0.2
    assert result.steps == 96 and result.state.best_step is not None
    # The model holds the best evaluated weights.
    assert after == pytest.approx(result.state.best_metric)


def test_regression_task_trains(tiny_bert_dir, tiny_glue, tmp_path):
    bundle, data = _setup(tiny_bert_dir, tiny_glue, "stsb")
    cfg = TrainConfig(learning_rate=3e-3, epochs=4, batch_size=16, eval_every=16)
    _train(bundle, data, tmp_path / "run", cfg)
    assert data.evaluate(bundle.model, bundle.tokenizer)["pearson"] > 0.5


def test_gradient_accumulation_matches_large_batch(tiny_bert_dir, tiny_glue, tmp_path):
    """One optimizer step over 16 examples: a batch of 16 == two accumulated batches of 8 (dropout off)."""
    bundles = []
    for bs, accum in ((16, 1), (8, 2)):
        bundle, data = _setup(tiny_bert_dir, tiny_glue, max_train=16)
        for m in bundle.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        cfg = TrainConfig(learning_rate=1e-3, max_steps=1, batch_size=bs, grad_accum_steps=accum, group_by_length=False,
                          keep_best=False, max_grad_norm=0.0, warmup_ratio=0.0)
        _train(bundle, data, tmp_path / f"run{bs}", cfg, evaluator=False)
        bundles.append(bundle)
    changed = False
    for (n, a), b in zip(bundles[0].model.named_parameters(), bundles[1].model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), n
    fresh, _ = _setup(tiny_bert_dir, tiny_glue, max_train=16)
    for a, b in zip(fresh.model.parameters(), bundles[0].model.parameters()):
        changed |= not torch.equal(a, b)
    assert changed  # the step did update the weights


class _Interrupt(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, state, model):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt


class _Counter(Callback):
    """A stateful callback: its count must survive a resume."""

    def __init__(self):
        self.steps_seen = 0

    def on_step_end(self, state, model):
        self.steps_seen += 1

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = state["steps_seen"]


def test_resume_after_interruption_matches_uninterrupted_run(tiny_bert_dir, tiny_glue, tmp_path):
    cfg = TrainConfig(learning_rate=1e-3, epochs=2, batch_size=16, eval_every=5, save_every=5, keep_best=False)
    straight, data = _setup(tiny_bert_dir, tiny_glue, max_train=96)
    _train(straight, data, tmp_path / "straight", cfg, evaluator=False)

    resumed, data = _setup(tiny_bert_dir, tiny_glue, max_train=96)
    counter = _Counter()
    with pytest.raises(KeyboardInterrupt):
        _train(resumed, data, tmp_path / "resumed", cfg, callbacks=[counter, _Interrupt(at_step=8)], evaluator=False)
    # Start again from scratch in a new process-like state: new model object, new callbacks.
    resumed, data = _setup(tiny_bert_dir, tiny_glue, max_train=96)
    counter = _Counter()
    result = _train(resumed, data, tmp_path / "resumed", cfg, callbacks=[counter, _Interrupt(at_step=-1)], evaluator=False)
    assert result.resumed_from_step == 5  # the last checkpoint before the interruption at step 8
    assert result.steps == 12 and counter.steps_seen == 12
    for (n, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_changed_settings_do_not_silently_resume(tiny_bert_dir, tiny_glue, tmp_path):
    from slimbert.errors import SlimbertError

    bundle, data = _setup(tiny_bert_dir, tiny_glue, max_train=32)
    _train(bundle, data, tmp_path / "run", TrainConfig(max_steps=2, batch_size=16), evaluator=False)
    with pytest.raises(SlimbertError, match="different settings"):
        _train(bundle, data, tmp_path / "run", TrainConfig(max_steps=3, batch_size=16), evaluator=False)


class _NotYet(Callback):
    """Marks evaluations before step 4 as ineligible for 'best' (e.g. sparsity still ramping)."""

    def on_step_begin(self, state, model):
        state.best_eligible = state.global_step >= 4


def test_best_checkpoint_respects_eligibility(tiny_bert_dir, tiny_glue, tmp_path):
    bundle, data = _setup(tiny_bert_dir, tiny_glue, max_train=64)
    scores = iter([0.9, 0.8, 0.1, 0.2])  # evals at steps 2, 4, 6, 8

    result = train(bundle.model, data.train_set(bundle.tokenizer), TrainConfig(max_steps=8, batch_size=16, eval_every=2),
                   tmp_path / "run", loss_terms=[TaskLoss(False)], callbacks=[_NotYet()],
                   evaluator=lambda m: {"accuracy": next(scores)}, main_metric="accuracy")
    assert result.state.best_step == 8 and result.best_metrics["accuracy"] == 0.2


@pytest.mark.parametrize("keep_best", [True, False])
def test_a_run_says_which_evaluated_weights_it_kept(tiny_bert_dir, tiny_glue, tmp_path, keep_best):
    bundle, data = _setup(tiny_bert_dir, tiny_glue, max_train=32)
    scores = iter([0.9, 0.1])  # evals at steps 2 and 4: the best one is not the last
    result = train(bundle.model, data.train_set(bundle.tokenizer),
                   TrainConfig(max_steps=4, batch_size=16, eval_every=2, keep_best=keep_best), tmp_path / "run",
                   loss_terms=[TaskLoss(False)], evaluator=lambda m: {"accuracy": next(scores)}, main_metric="accuracy")
    assert result.kept_best is keep_best
    assert result.best_metrics == ({"step": 2, "accuracy": 0.9} if keep_best else {"step": 4, "accuracy": 0.1})
    which = "best" if keep_best else "last"
    assert result.summary() == f"4 steps; kept the {which} evaluated weights {result.best_metrics}"


def test_progress_prints_plain_lines_when_not_a_terminal(monkeypatch, capsys):
    """In a log file (no terminal) the bar is invisible: status lines are printed instead."""
    from slimbert.training import progress as progress_module

    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    bar = progress_module.TrainingProgress("tiny run", total_steps=4)
    assert bar.plain_lines  # pytest captures stderr: not a terminal
    with bar:
        bar.advance_to(2, None, None, None)  # a resumed run starts at step 2
        bar.advance_to(3, 0.5, 0.9, "accuracy")
        bar.advance_to(4, 0.4, 0.9, "accuracy")
    err = capsys.readouterr().err
    assert "tiny run: step 3/4" in err and "loss 0.5000" in err and "best accuracy 0.9000" in err
    assert "tiny run: step 4/4" in err and "step 2/4" not in err
    with bar:
        bar.note('install it with pip install -e ".[torchao]"')  # data, not a rich style tag
    assert '".[torchao]"' in capsys.readouterr().err
