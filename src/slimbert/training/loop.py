"""The one training loop (HF Accelerate): AdamW, linear warm-up/decay, gradient accumulation,
periodic evaluation keeping the best weights, atomic checkpoints and resume.

Every method that trains (fine-tuning, distillation, QAT, movement pruning, exit heads) runs here
and contributes only :class:`~slimbert.training.losses.LossTerm` objects and
:class:`~slimbert.training.callbacks.Callback` objects; the loop itself is never forked.
On many GPUs or nodes, start the same command with ``accelerate launch``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from slimbert.data.encoding import EncodedDataset, PadCollator
from slimbert.errors import SlimbertError, TrainingDiverged
from slimbert.training.callbacks import Callback
from slimbert.training.checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint, save_weights
from slimbert.training.config import TrainConfig
from slimbert.training.losses import LossTerm
from slimbert.training.progress import TrainingProgress
from slimbert.training.sampler import EpochBatchSampler
from slimbert.training.state import TrainState

Evaluator = Callable[[nn.Module], dict[str, float]]
BEST_WEIGHTS = "best.safetensors"
RUN_SIGNATURE = "run.json"


class TrainingModule(nn.Module):
    """The model plus the loss terms, as one module (so DDP wraps and checkpoints them together)."""

    def __init__(self, model: nn.Module, loss_terms: Sequence[LossTerm]):
        super().__init__()
        self.model = model
        self.loss_terms = nn.ModuleList(loss_terms)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        extra = {}
        if any(t.needs_hidden_states for t in self.loss_terms):
            extra["output_hidden_states"] = True
        if any(t.needs_attentions for t in self.loss_terms):
            extra["output_attentions"] = True
        outputs = self.model(**inputs, **extra)
        total = torch.zeros((), device=outputs.logits.device)
        parts = {}
        for term in self.loss_terms:
            value = term(batch, outputs, self.model)
            parts[term.name] = float(value.detach())
            total = total + term.weight * value
        return total, parts


@dataclass
class TrainResult:
    state: TrainState
    best_metrics: dict[str, float] | None  # the evaluation of the weights kept (None: never evaluated)
    resumed_from_step: int | None
    kept_best: bool = False  # True: the best evaluated checkpoint's weights were kept; False: the last step's

    @property
    def steps(self) -> int:
        return self.state.global_step

    def summary(self) -> str:
        """'N steps' and which evaluated weights were kept, for a run's notes (evaluated on the run's evaluation
        split: dev, or a held-out one)."""
        if not self.best_metrics:
            return f"{self.steps} steps"
        which = "best" if self.kept_best else "last"
        return f"{self.steps} steps; kept the {which} evaluated weights {self.best_metrics}"


def _param_groups(module: TrainingModule, cfg: TrainConfig, callbacks: Sequence[Callback]) -> list[dict]:
    claimed: list[dict] = []
    for cb in callbacks:
        claimed.extend(cb.param_groups(module.model) or [])
    claimed_ids = {id(p) for g in claimed for p in g["params"]}
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad or id(p) in claimed_ids:
            continue
        # Standard BERT practice: no weight decay on biases and LayerNorm weights.
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups + claimed if g["params"]]


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from 0 to 1 over ``warmup_steps``, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _check_signature(run_dir: Path, signature: dict) -> None:
    path = run_dir / RUN_SIGNATURE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != signature:
            diff = {k: (saved.get(k), v) for k, v in signature.items() if saved.get(k) != v}
            raise SlimbertError(
                f"{run_dir} holds a checkpoint of a run with different settings {diff} (saved, now). "
                "Rerun with the same settings to resume, or use another output directory / --overwrite."
            )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(signature, indent=2))


def train(
    model: nn.Module,
    train_set: EncodedDataset,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    loss_terms: Sequence[LossTerm],
    callbacks: Sequence[Callback] = (),
    evaluator: Evaluator | None = None,
    main_metric: str | None = None,
    greater_is_better: bool = True,
    pad_token_id: int = 0,
    regression: bool = False,
    description: str = "training",
) -> TrainResult:
    """Train ``model`` in place; on return it holds the best evaluated weights (or the last ones).

    Resumes from ``run_dir/checkpoints`` when a checkpoint of the same run exists.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    cfg.validate()
    run_dir = Path(run_dir)
    # batch_size is the global batch: each of the run's processes takes an equal share of every batch, so the
    # same command trains the same schedule (steps, learning rate) on one process or many.
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))
    if cfg.batch_size % accelerator.num_processes:
        raise SlimbertError(f"the batch size {cfg.batch_size} is the global batch and must split evenly across the "
                            f"{accelerator.num_processes} processes; use a multiple of {accelerator.num_processes}")
    if accelerator.num_processes > 1:
        print(f"{description}: process {accelerator.process_index} of {accelerator.num_processes}, global batch "
              f"{cfg.batch_size} ({cfg.batch_size // accelerator.num_processes} per process)", file=sys.stderr,
              flush=True)
    set_seed(cfg.seed)
    if any(t.needs_attentions for t in loss_terms) and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # attention probabilities are only returned by eager attention

    module = TrainingModule(model, loss_terms)
    sampler = EpochBatchSampler(train_set.lengths(), cfg.batch_size, cfg.seed, cfg.group_by_length)
    # Its own generator: iterating must not draw from the global RNG, or dropout masks after a
    # resume (which restores the global RNG) would differ from an uninterrupted run.
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=PadCollator(pad_token_id, regression),
                                         generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = torch.optim.AdamW(_param_groups(module, cfg, callbacks), lr=cfg.learning_rate)
    module, optimizer, loader = accelerator.prepare(module, optimizer, loader)

    micro_per_epoch = len(loader)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum_steps)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = int(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, total_steps))
    eval_every = cfg.eval_every or steps_per_epoch
    save_every = cfg.save_every or eval_every

    signature = {"train_config": asdict(cfg), "train_examples": len(train_set), "total_steps": total_steps,
                 "loss_terms": [t.name for t in loss_terms], "callbacks": [type(c).__name__ for c in callbacks]}
    if accelerator.is_main_process:
        _check_signature(run_dir, signature)
    accelerator.wait_for_everyone()

    unwrapped = accelerator.unwrap_model(module)
    state = TrainState(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    resumed_from = None
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        saved = load_checkpoint(ckpt, unwrapped, optimizer, scheduler)
        state = TrainState.from_dict(saved["trainer"])
        for cb, cb_state in zip(callbacks, saved["callbacks"]):
            cb.load_state_dict(cb_state)
        resumed_from = state.global_step

    def run_callbacks(hook: str, *args) -> None:
        for cb in callbacks:
            getattr(cb, hook)(state, unwrapped.model, *args)

    def is_better(value: float) -> bool:
        if state.best_metric is None:
            return True
        return value > state.best_metric if greater_is_better else value < state.best_metric

    def do_eval() -> dict[str, float] | None:
        if evaluator is None:
            return None
        metrics = evaluator(unwrapped.model) if accelerator.is_main_process else {}
        state.eval_history.append({"step": state.global_step, **metrics})
        run_callbacks("on_evaluate", metrics)
        if accelerator.is_main_process and cfg.keep_best and state.best_eligible and main_metric in metrics:
            if is_better(metrics[main_metric]):
                state.best_metric, state.best_step = metrics[main_metric], state.global_step
                save_weights(unwrapped.model, run_dir / BEST_WEIGHTS)
        return metrics

    def checkpoint() -> None:
        if accelerator.is_main_process:
            save_checkpoint(run_dir, state.global_step, unwrapped, optimizer, scheduler, state.to_dict(),
                            [cb.state_dict() for cb in callbacks])
        accelerator.wait_for_everyone()

    run_callbacks("on_train_begin")
    progress = TrainingProgress(description, total_steps, enabled=accelerator.is_main_process)
    if resumed_from is not None:
        progress.note(f"resumed from checkpoint at step {resumed_from}/{total_steps}")
    module.train()
    with progress:
        progress.advance_to(state.global_step, state.last_loss, state.best_metric, main_metric)
        while not state.done:
            sampler.set_position(state.epoch, state.batches_in_epoch)  # global batches (split across processes)
            started = time.perf_counter()
            for batch in loader:
                if state.batches_in_epoch % cfg.grad_accum_steps == 0:
                    run_callbacks("on_step_begin")
                state.batches_in_epoch += 1
                last_of_epoch = state.batches_in_epoch >= micro_per_epoch
                sync = state.batches_in_epoch % cfg.grad_accum_steps == 0 or last_of_epoch
                with accelerator.no_sync(module) if not sync else nullcontext():
                    loss, parts = module(batch)
                    if not torch.isfinite(loss):  # stop now: every later step would train on NaN
                        raise TrainingDiverged(float(loss.detach()), state.global_step + 1, total_steps, description,
                                               cfg.learning_rate)
                    accelerator.backward(loss / cfg.grad_accum_steps)
                run_callbacks("on_after_backward")
                if not sync:
                    continue
                if cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.last_loss = float(loss.detach())
                run_callbacks("on_step_end")
                now = time.perf_counter()
                state.train_seconds += now - started
                started = now
                if state.global_step % eval_every == 0 or state.done:
                    module.eval()
                    metrics = do_eval()
                    module.train()
                    if metrics:
                        progress.note(f"step {state.global_step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
                    started = time.perf_counter()
                progress.advance_to(state.global_step, state.last_loss, state.best_metric, main_metric, parts)
                # The final checkpoint too: rerunning a finished run then returns at once.
                if state.global_step % save_every == 0 or state.done:
                    checkpoint()
                    started = time.perf_counter()
                if state.done:
                    break
            if not state.done:
                state.epoch += 1
                state.batches_in_epoch = 0
    run_callbacks("on_train_end")
    accelerator.wait_for_everyone()
    best_metrics, kept_best = None, False
    if (run_dir / BEST_WEIGHTS).is_file() and cfg.keep_best and state.best_step is not None:
        load_weights(unwrapped.model, run_dir / BEST_WEIGHTS)
        best_metrics = next((h for h in state.eval_history if h["step"] == state.best_step), None)
        kept_best = True
    elif state.eval_history:
        best_metrics = state.eval_history[-1]
    if accelerator.is_main_process:
        (run_dir / "train_state.json").write_text(json.dumps(state.to_dict(), indent=2))
    unwrapped.model.eval()
    return TrainResult(state=state, best_metrics=best_metrics, resumed_from_step=resumed_from, kept_best=kept_best)
