"""Does a refactor change results? Run experiments without latency at one commit, then compare two runs.

    # in a worktree of each commit (runs/ linked to the finished teachers), with that commit's code:
    PYTHONPATH=src python benchmarks/probes/same_results.py run OUT_DIR EXPERIMENT...
    python benchmarks/probes/same_results.py compare BEFORE_DIR AFTER_DIR

``compare`` prints, per experiment, the compressed model's metrics on PyTorch and ONNX Runtime, its sizes
(artifact, ONNX), parameters and FLOPs, and whether they are identical.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run(out: Path, experiments: list[str]) -> None:
    from slimbert.bench.runner import run_experiment

    for name in experiments:
        run_experiment(Path("benchmarks/experiments") / f"{name}.yaml", results_dir=out, latency=False,
                       log=lambda m: print(m, flush=True))


def facts(path: Path) -> tuple:
    compressed = json.loads(path.read_text())["result"]["compressed"]
    return (compressed["metrics"], compressed.get("metrics_onnx"), round(compressed["size_mb"], 4),
            round(compressed["size_mb_onnx"], 4), compressed["params"]["total"], compressed["flops"])


def compare(before: Path, after: Path) -> bool:
    same_all = True
    print("| experiment | metrics (PyTorch, ONNX Runtime) | size MB | ONNX MB | params | FLOPs | same |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted(before.glob("*.json")):
        a, b = facts(path), facts(after / path.name)
        same = a == b
        same_all &= same
        print(f"| {path.stem} | {a[0]}, {a[1]} | {a[2]} | {a[3]} | {a[4]:,} | {a[5]:,} | {'yes' if same else f'NO: {b}'} |")
    return same_all


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(Path(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(0 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 1)
