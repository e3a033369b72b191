"""What the ONNX Runtime segments of an adaptive artifact cost at full depth, against its fused static graph.

    python benchmarks/probes/segment_overhead.py runs/bench/early-exit-entropy-sst2 [--tokens 25] [--runs 50]

One random sentence of ``--tokens`` tokens at batch 1, 2 threads: the adaptive runner over ``adaptive/`` with no
exits and no dropping, then ``model.onnx``; prints the mean ms of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from slimbert.export.onnx import onnx_session
from slimbert.export.onnx_segments import ADAPTIVE_DIR, OnnxSegments
from slimbert.models.adaptive.runner import AdaptiveSettings, run_adaptive


def mean_ms(fn, runs: int) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--tokens", type=int, default=25)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    segments = OnnxSegments(f"{args.artifact}/{ADAPTIVE_DIR}", 2)
    ids = torch.randint(1000, 30000, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask") or "token_type_ids" in segments.inputs}
    fused = onnx_session(f"{args.artifact}/model.onnx", 2)
    names = {i.name for i in fused.get_inputs()}
    feeds = {k: v.numpy().astype(np.int64) for k, v in inputs.items() if k in names}
    print(f"segments at full depth: {mean_ms(lambda: run_adaptive(segments, inputs, AdaptiveSettings()), args.runs):.2f} ms")
    print(f"fused static graph:     {mean_ms(lambda: fused.run(None, feeds), args.runs):.2f} ms")


if __name__ == "__main__":
    main()
