"""Which weights did an unstructured pruning run keep? Overlap of its mask with the magnitude mask.

For every sparse encoder linear of a pruned artifact, compares the kept set with the one magnitude
pruning would keep *on the dense model it came from* at the same density:

    overlap = |kept ∩ top-k(|W_dense|)| / k        (k = kept weights of that matrix)

1.0: the run kept exactly the largest weights; ``k / numel`` (0.5 at 50% sparsity): the kept set
is no better than a random draw with respect to magnitude. Used to explain movement pruning runs
(Sanh et al., 2020) whose masks learned nothing in a short budget. Run::

    python benchmarks/probes/mask_overlap.py --dense runs/teacher-minilm-sst2 \\
        --pruned runs/bench/movement-50-sst2 [--json]
"""

from __future__ import annotations

import argparse
import json

from torch import nn

from slimbert.methods.pruning.common.masks import topk_mask
from slimbert.methods.pruning.common.sparse_storage import SparseLinear


def magnitude_overlap(dense: nn.Module, pruned: nn.Module) -> dict[str, dict[str, float]]:
    """Per sparse linear of ``pruned`` (matched by module name in ``dense``): density, overlap, mean |W|.

    Returns ``{name: {"density", "overlap", "random_overlap", "kept_abs_mean", "pruned_abs_mean"}}``,
    the |W| means taken on the dense weights (what magnitude pruning ranks by).
    """
    dense_modules = dict(dense.named_modules())
    rows = {}
    for name, module in pruned.named_modules():
        if not isinstance(module, SparseLinear) or name not in dense_modules:
            continue
        weight = dense_modules[name].weight.detach().abs()  # (out, in)
        kept = module.dense_weight().detach() != 0  # (out, in)
        k = int(kept.sum())
        if k == 0 or k == weight.numel():
            continue
        top = topk_mask(weight, k).bool()  # what magnitude pruning keeps at this density
        rows[name] = {
            "density": k / weight.numel(),
            "overlap": int((top & kept).sum()) / k,
            "random_overlap": k / weight.numel(),
            "kept_abs_mean": float(weight[kept].mean()),
            "pruned_abs_mean": float(weight[~kept].mean()),
        }
    return rows


def main(argv: list[str] | None = None) -> None:
    from slimbert.models.artifact import load_compressed
    from slimbert.models.loading import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True, help="the dense model the pruned one was made from")
    parser.add_argument("--pruned", required=True, help="a slimbert artifact with sparse encoder linears")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    pruned = load_compressed(args.pruned)
    dense = load_model(args.dense)
    rows = magnitude_overlap(dense.model, pruned.model)
    if not rows:
        raise SystemExit(f"{args.pruned} has no sparse encoder linears (not an unstructured pruning artifact)")
    mean = sum(r["overlap"] for r in rows.values()) / len(rows)
    if args.json:
        print(json.dumps({"matrices": rows, "mean_overlap": mean}, indent=2))
        return
    print("| matrix | density | overlap with magnitude mask | random draw | mean abs(W) kept / pruned |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['density']:.2f} | {r['overlap']:.2f} | {r['random_overlap']:.2f} | "
              f"{r['kept_abs_mean']:.4f} / {r['pruned_abs_mean']:.4f} |")
    print(f"\nmean overlap over {len(rows)} matrices: {mean:.3f}")


if __name__ == "__main__":
    main()
