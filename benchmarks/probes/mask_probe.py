"""Which weight ranking survives a short pruning ramp? Movement scores vs magnitude vs random.

A controlled probe behind the movement-pruning rows of BENCHMARKS.md. From one checkpoint (by
default the pretrained MiniLM with a new task head), for each ranking:

1. train ``dense_steps`` steps with every weight kept while movement scores learn (Sanh et al.,
   2020: the scores accumulate -W * dL/dW through the straight-through estimator);
2. ramp every encoder linear to ``keep`` (the kept fraction) along the cubic schedule over
   ``ramp_steps`` steps, then train ``final_steps`` more at ``keep``, ranking weights by
   * ``movement``: the learned scores, which keep learning (top-v, as in movement pruning);
   * ``magnitude``: |W| at the start of the ramp (fixed from then on);
   * ``random``: a random ranking drawn at the start of the ramp (fixed).

Same seed, batches and learning rates for the three; plain task loss, no distillation. Reports the
mean training loss per ``log_every`` steps, the share of the first matrix's mask that changed since
the previous report, and dev metrics at the end. At the start of the ramp it also measures what
cutting every matrix to ``keep`` at once by the ranking would do to the linears' outputs on that
step's batch (:func:`cut_error`): how large the error is, and whether the removed terms cancel. Run::

    python benchmarks/probes/mask_probe.py --model minilm-l6 --task sst2 --keep 0.5 \\
        --out benchmarks/probes/results/mask-probe-sst2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from slimbert.data.encoding import PadCollator
from slimbert.data.tasks import get_task
from slimbert.environment import environment
from slimbert.measure.latency import set_threads
from slimbert.methods.pruning.common.masked_linear import MovementLinear
from slimbert.methods.pruning.common.masks import TopKBinarizer
from slimbert.methods.pruning.common.movement_pruner import movement_pruner
from slimbert.methods.pruning.common.schedules import cubic_progress
from slimbert.methods.pruning.movement import MovementConfig
from slimbert.models.loading import load_model
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

RANKINGS = ("movement", "magnitude", "random")


@torch.no_grad()
def dense_inputs(model: torch.nn.Module, modules: list[MovementLinear], batch: dict) -> list[torch.Tensor]:
    """Each module's input (..., in) in one forward pass of ``model`` on ``batch`` with every weight kept
    (eval mode); the modules' kept fractions and the model's mode are restored afterwards."""
    inputs: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, i=i: inputs.__setitem__(i, args[0]))
             for i, m in enumerate(modules)]
    was_training, fractions = model.training, [m.keep_fraction for m in modules]
    try:
        for m in modules:
            m.keep_fraction = 1.0
        model.eval()(**batch)
    finally:
        for h in hooks:
            h.remove()
        for m, fraction in zip(modules, fractions):
            m.keep_fraction = fraction
        model.train(was_training)
    return [inputs[i] for i in range(len(modules))]


@torch.no_grad()
def cut_error(model: torch.nn.Module, modules: list[MovementLinear], batch: dict, keep: float) -> dict[str, float]:
    """What pruning each linear to ``keep`` by its current scores does to its output on ``batch``.

    With x (tokens, in) the linear's input in a dense forward pass, y = x W^T and the removed part
    d = x (W * (1 - M))^T (tokens, out), returns the means over the linears of

    * ``relative_output_error``: ||d|| / ||y||;
    * ``coherence``: mean over tokens and outputs of |d_ti| / sqrt(sum_j removed (W_ij x_tj)^2): about
      0.8 (sqrt(2/pi)) when the removed terms W_ij x_tj have independent signs and cancel, larger when
      they share a sign and add up.
    """
    errors, coherences = [], []
    for m, x in zip(modules, dense_inputs(model, modules, batch)):
        x = x.reshape(-1, m.in_features)  # (tokens, in)
        removed = m.weight * (1.0 - TopKBinarizer.apply(m.scores, keep))  # (out, in): the hard variant's mask
        d = x @ removed.T  # (tokens, out)
        spread = (x.square() @ removed.square().T).sqrt()  # (tokens, out): the size of d if the terms cancelled
        errors.append(float(d.norm() / (x @ m.weight.T).norm()))
        coherences.append(float((d.abs() / spread.clamp_min(1e-12)).mean()))
    return {"keep": keep, "relative_output_error": round(sum(errors) / len(errors), 4),
            "coherence": round(sum(coherences) / len(coherences), 4)}


def probe_ranking(model_spec: str, data: TaskDataset, ranking: str, *, keep: float, dense_steps: int, ramp_steps: int,
                  final_steps: int, learning_rate: float, score_learning_rate: float, batch_size: int, seed: int,
                  log_every: int = 10, log=print) -> dict:
    """One run of the probe (see the module docstring); returns its loss curve and dev metrics."""
    torch.manual_seed(seed)
    bundle = load_model(model_spec, data.task)
    model = bundle.model
    pruner, _ = movement_pruner(bundle, MovementConfig(sparsity=1.0 - keep))
    scores = [m.scores for m in pruner.modules]
    score_ids = {id(p) for p in scores}
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in score_ids], "lr": learning_rate},
        {"params": scores, "lr": score_learning_rate, "weight_decay": 0.0},
    ])
    train_set = data.train_set(bundle.tokenizer)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed)).tolist()
    collate = PadCollator(bundle.tokenizer.pad_token_id or 0, data.task.is_regression)
    total = dense_steps + ramp_steps + final_steps
    curve, losses, previous_mask, first_cut = [], [], None, None
    model.train()
    for step in range(total):
        if step == dense_steps and ranking != "movement":  # fix the ranking; the scores stop learning
            with torch.no_grad():
                for m in pruner.modules:
                    m.scores.copy_(m.weight.abs() if ranking == "magnitude" else torch.rand_like(m.scores))
            optimizer.param_groups[1]["lr"] = 0.0
        pruner.update(cubic_progress(step, dense_steps, dense_steps + ramp_steps))  # kept fraction 1 -> keep
        batch = collate([train_set[i] for i in order[(step * batch_size) % len(order):][:batch_size]])
        if step == dense_steps:
            first_cut = cut_error(model, pruner.modules, batch, keep)
            log(f"{ranking}: cutting to {keep} at the ramp start: {first_cut}")
        loss = model(**batch).loss  # the model's own task loss (cross-entropy / MSE)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            mask = pruner.modules[0].current_mask().detach().bool()
            changed = float((mask != previous_mask).float().mean()) if previous_mask is not None else None
            previous_mask = mask
            point = {"step": step + 1, "kept": round(pruner.modules[0].keep_fraction, 4),
                     "mean_loss": round(sum(losses[-log_every:]) / log_every, 4), "mask_changed": changed}
            curve.append(point)
            log(f"{ranking}: {point}")
    model.eval()
    metrics = data.evaluate(model, bundle.tokenizer)
    log(f"{ranking}: dev {metrics}")
    return {"ranking": ranking, "curve": curve, "cut_at_ramp_start": first_cut, "metrics": metrics}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default=None, help="GLUE directory; default $SLIMBERT_DATA")
    parser.add_argument("--keep", type=float, default=0.5, help="kept fraction of every encoder matrix")
    parser.add_argument("--dense-steps", type=int, default=80)
    parser.add_argument("--ramp-steps", type=int, default=40)
    parser.add_argument("--final-steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--score-lr", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rankings", nargs="+", default=list(RANKINGS), choices=RANKINGS)
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.keep <= 1:
        parser.error(f"--keep is the kept fraction, in (0, 1]; got {args.keep}")
    set_threads(args.threads)
    data = TaskDataset(get_task(args.task), RunSettings(data_dir=args.data_dir, max_eval_samples=args.max_eval_samples))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "rankings")}
    runs = [probe_ranking(args.model, data, r, keep=args.keep, dense_steps=args.dense_steps, ramp_steps=args.ramp_steps,
                          final_steps=args.final_steps, learning_rate=args.lr, score_learning_rate=args.score_lr,
                          batch_size=args.batch_size, seed=args.seed) for r in args.rankings]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/probes/mask_probe.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.write_text(json.dumps({"command": command, "settings": settings, "runs": runs,
                                        "environment": environment(args.threads)}, indent=2, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
