"""Which dimension should FWSVD's Fisher weighting run along? Dev accuracy right after factoring (no recovery).

    python benchmarks/probes/fwsvd_orientation.py runs/teacher-minilm-sst2 --task sst2 --keep 0.5

For every encoder linear W (out, in), the same rank as ``svd`` at ``--keep`` (its uniform kept-weight ratio), three
rank-r reconstructions put back in place of W (the accuracy of a factored model equals that of its product):

* plain SVD;
* Fisher-weighted per *input feature* (a column of W: slimbert's ``weighting: fisher``): SVD of W diag(s_in);
* Fisher-weighted per *output* (a row of W): SVD of diag(s_out) W;

with the empirical Fisher ``F = sum over batches of (dL/dW)^2`` from ``--samples`` training sentences (as ``svd``
estimates it). Prints each variant's dev metric and writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json

import torch

from slimbert.data.tasks import get_task
from slimbert.models.loading import load_model
from slimbert.models.structure import layer_views
from slimbert.steps.sampling import sample_batches
from slimbert.training.losses import TaskLoss
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def rank_for(weight: torch.Tensor, keep: float) -> int:
    out, inp = weight.shape
    return max(1, int(keep * out * inp / (out + inp)))


def reconstruct(weight: torch.Tensor, rank: int, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
    """The rank-r approximation minimising || diag(rows) (W - W_r) diag(cols) ||_F (None: unweighted)."""
    r = rows if rows is not None else torch.ones(weight.shape[0])
    c = cols if cols is not None else torch.ones(weight.shape[1])
    u, s, vh = torch.linalg.svd(r[:, None] * weight * c[None, :], full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank] / r[:, None] / c[None, :]


def floored_sqrt(x: torch.Tensor) -> torch.Tensor:
    s = x.clamp_min(0).sqrt()
    return s.clamp_min(float(s.max()) * 1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--task", required=True)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--out")
    args = parser.parse_args()
    task = get_task(args.task)
    data = TaskDataset(task, RunSettings())
    bundle = load_model(args.model, task)
    model = bundle.model.eval()
    linears = {f"{v.index}.{role}": m for v in layer_views(model) for role, m in v.linears().items()}

    class Ctx:  # what sample_batches reads
        pass

    ctx = Ctx()
    ctx.data, ctx.settings, ctx.task = data, data.settings, task
    fisher = {n: torch.zeros_like(m.weight) for n, m in linears.items()}
    loss_fn = TaskLoss(task.is_regression)
    for batch in sample_batches(ctx, bundle.tokenizer, args.samples, batch_size=8):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        loss = loss_fn(batch, model(**inputs), model)
        grads = torch.autograd.grad(loss, [m.weight for m in linears.values()])
        for name, grad in zip(linears, grads):
            fisher[name] += grad.detach().pow(2)
    original = {n: m.weight.detach().clone() for n, m in linears.items()}
    results = {"teacher": data.evaluate(model, bundle.tokenizer)[task.main_metric]}
    for variant in ("svd", "fisher-input (column)", "fisher-output (row)"):
        with torch.no_grad():
            for name, m in linears.items():
                w = original[name]
                rows = floored_sqrt(fisher[name].sum(1)) if variant.startswith("fisher-output") else None
                cols = floored_sqrt(fisher[name].sum(0)) if variant.startswith("fisher-input") else None
                m.weight.copy_(reconstruct(w, rank_for(w, args.keep), rows, cols))
        results[variant] = data.evaluate(model, bundle.tokenizer)[task.main_metric]
        print(f"{variant}: {results[variant] * 100:.2f}", flush=True)
    with torch.no_grad():
        for name, m in linears.items():
            m.weight.copy_(original[name])
    record = {"model": args.model, "task": task.name, "keep": args.keep, "samples": args.samples,
              "metric": task.main_metric, "before_recovery": results,
              "command": "python benchmarks/probes/fwsvd_orientation.py " + " ".join(
                  f"{a}" for a in [args.model, "--task", task.name, "--keep", args.keep, "--samples", args.samples])}
    print(json.dumps(record, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
