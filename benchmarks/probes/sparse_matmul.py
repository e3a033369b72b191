"""Does unstructured sparsity make a linear layer faster on this CPU? Dense vs torch sparse CSR, measured.

For each weight shape (out, in), sparsity and token count M, times ``x @ W^T`` with the dense fp32
kernel and with ``torch.sparse.mm`` on a CSR copy of the same (randomly) pruned weight, interleaved
in one process (:func:`slimbert.measure.latency.time_interleaved`). ONNX Runtime is not in the
table: its CPU MatMul has no sparse kernel, so a pruned graph runs exactly like the dense one (the
compress reports show it). Run it on a quiet machine::

    python benchmarks/probes/sparse_matmul.py --out benchmarks/probes/results/sparse-matmul.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from slimbert.environment import environment
from slimbert.measure.latency import set_threads, time_interleaved

# The linear shapes of MiniLM-L6 (hidden 384, FFN 1536): attention projections and the two FFN matrices.
MINILM_SHAPES = ((384, 384), (1536, 384), (384, 1536))


def sparse_matmul_timings(shapes=MINILM_SHAPES, sparsities=(0.5, 0.7, 0.9, 0.97), tokens=(128, 4096),
                          threads: int = 2, budget_s: float = 2.0, seed: int = 0) -> list[dict]:
    """One row per (shape, sparsity, tokens): dense and CSR median ms and the CSR speedup (dense / CSR)."""
    set_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for out_features, in_features in shapes:
        for sparsity in sparsities:
            weight = torch.randn(out_features, in_features, generator=gen)
            weight[torch.rand(weight.shape, generator=gen) < sparsity] = 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                csr = weight.to_sparse_csr()
            for m in tokens:
                x = torch.randn(m, in_features, generator=gen)  # (M, in)
                with torch.inference_mode():
                    stats = time_interleaved({"dense": lambda: F.linear(x, weight),
                                              "csr": lambda: torch.sparse.mm(csr, x.t()).t()}, budget_s=budget_s)
                dense_ms, csr_ms = stats["dense"].median_ms, stats["csr"].median_ms
                rows.append({"out": out_features, "in": in_features, "sparsity": sparsity, "tokens": m,
                             "dense_ms": dense_ms, "csr_ms": csr_ms, "csr_speedup": dense_ms / csr_ms})
    return rows


def render_markdown(rows: list[dict]) -> str:
    lines = ["| weight (out x in) | sparsity | tokens | dense ms | CSR ms | CSR speedup |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['out']}x{r['in']} | {r['sparsity']:.0%} | {r['tokens']} | {r['dense_ms']:.3f} | {r['csr_ms']:.3f} | "
              f"{r['csr_speedup']:.2f}x |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the rows + environment as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=2.0, help="timing budget per (shape, sparsity, tokens)")
    args = parser.parse_args()
    rows = sparse_matmul_timings(threads=args.threads, budget_s=args.budget_s)
    print(render_markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": "python benchmarks/probes/sparse_matmul.py" + (f" --out {args.out}" if args.out else ""),
                  "rows": rows, "environment": environment(args.threads)}
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
