"""Latency: warm-up, a fixed thread count, interleaved repeated runs, median and p90.

Timings under about 10 ms vary by 20-30% between rounds on this machine (shared/docs/RUNTIMES.md),
so runners that are compared with each other (baseline vs compressed) are timed *interleaved* in
one process: every round runs each runner once, in rotating order. Runtimes are timed in separate
blocks: interleaving PyTorch with ONNX Runtime slowed PyTorch by up to 40% here (each runtime's
idle worker threads compete with the other's), and ONNX Runtime sessions are created without
thread spinning for the same reason. Inputs are random token ids with a full attention mask at
the requested batch x sequence length.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

Runner = Callable[[], object]
DEFAULT_GRID = ((1, 128), (32, 128))


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int

    @classmethod
    def from_seconds(cls, samples: list[float]) -> "LatencyStats":
        ms = sorted(s * 1e3 for s in samples)
        return cls(
            median_ms=statistics.median(ms),
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=statistics.fmean(ms),
            min_ms=ms[0],
            max_ms=ms[-1],
            runs=len(ms),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def grid_key(batch: int, seq: int) -> str:
    return f"b{batch}s{seq}"


def parse_grid_key(key: str) -> tuple[int, int] | None:
    """(batch, seq) of a :func:`grid_key` ("b32s128"); None for other keys (e.g. "b1nat": natural lengths)."""
    match = re.fullmatch(r"b(\d+)s(\d+)", key)
    return (int(match[1]), int(match[2])) if match else None


def time_interleaved(runners: dict[str, Runner], *, warmup: int = 3, min_runs: int = 5, max_runs: int = 50,
                     budget_s: float = 20.0, repeats: int = 1) -> dict[str, LatencyStats]:
    """Time each runner; the number of rounds fits ``budget_s`` (within [min_runs, max_runs]).

    Each round runs every runner once, in a rotating order, so that machine noise falls on all of them alike.
    ``repeats`` > 1: each runner's turn is ``repeats`` consecutive calls and the first is not recorded, so a small
    model is timed with its weights in cache, as it runs when it is served alone, not evicted by the large model
    timed just before it (a 3-layer int8 model's 16 MB fit in this CPU's cache; a 90 MB teacher's do not).
    """
    names = list(runners)
    per_call: dict[str, float] = {}
    for name in names:
        for _ in range(warmup):
            runners[name]()
        start = time.perf_counter()
        runners[name]()
        per_call[name] = time.perf_counter() - start
    rounds = int(budget_s / max(sum(per_call.values()) * repeats, 1e-6))
    rounds = max(min_runs, min(max_runs, rounds))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            for call in range(repeats):
                start = time.perf_counter()
                runners[name]()
                if repeats == 1 or call > 0:
                    samples[name].append(time.perf_counter() - start)
    return {n: LatencyStats.from_seconds(s) for n, s in samples.items()}


def random_inputs(vocab_size: int, input_names: tuple[str, ...], batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids (B, T), full attention mask, zero token types."""
    gen = torch.Generator().manual_seed(seed)
    all_inputs = {
        "input_ids": torch.randint(1000, vocab_size, (batch, seq), generator=gen) if vocab_size > 1000
        else torch.randint(1, vocab_size, (batch, seq), generator=gen),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, seq, dtype=torch.long),
    }
    return {k: all_inputs[k] for k in input_names}


def pytorch_runner(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Runner:
    model.eval()

    def run():
        with torch.inference_mode():
            return model(**inputs).logits

    return run


def onnx_runner(session, inputs: dict[str, torch.Tensor]) -> Runner:
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v.numpy() for k, v in inputs.items() if k in names}
    return lambda: session.run(None, feeds)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


@dataclass
class LatencyTarget:
    """Something to time: a PyTorch model and/or an ONNX file and/or an OpenVINO IR, with its input names and
    vocab size."""

    name: str
    model: torch.nn.Module | None
    onnx_path: str | None
    input_names: tuple[str, ...]
    vocab_size: int
    openvino_path: str | None = None


def measure_latency(targets: list[LatencyTarget], grid=DEFAULT_GRID, threads: int = 2, budget_s: float = 20.0,
                    runtimes: tuple[str, ...] = ("pytorch", "onnxruntime", "openvino"),
                    progress: Callable[[str], None] | None = None) -> dict[str, dict[str, dict[str, LatencyStats]]]:
    """``{target: {runtime: {"b1s128": stats}}}``; all targets of one runtime and grid point interleaved."""
    from slimbert.export.onnx import onnx_session
    from slimbert.export.openvino import openvino_logits, openvino_model

    set_threads(threads)
    sessions = {t.name: onnx_session(t.onnx_path, threads, spinning=False)
                for t in targets if t.onnx_path and "onnxruntime" in runtimes}
    compiled = {t.name: openvino_model(t.openvino_path, threads)
                for t in targets if t.openvino_path and "openvino" in runtimes}
    result: dict[str, dict[str, dict[str, LatencyStats]]] = {t.name: {} for t in targets}
    for batch, seq in grid:
        key = grid_key(batch, seq)
        for runtime in runtimes:
            runners: dict[str, Runner] = {}
            for t in targets:
                inputs = random_inputs(t.vocab_size, t.input_names, batch, seq)
                if runtime == "pytorch" and t.model is not None:
                    runners[t.name] = pytorch_runner(t.model, inputs)
                elif runtime == "onnxruntime" and t.name in sessions:
                    runners[t.name] = onnx_runner(sessions[t.name], inputs)
                elif runtime == "openvino" and t.name in compiled:
                    feeds = {k: v.numpy() for k, v in inputs.items()}
                    runners[t.name] = (lambda c=compiled[t.name], f=feeds: openvino_logits(c, f))
            if not runners:
                continue
            if progress:
                progress(f"timing {runtime} at batch {batch} x seq {seq}")
            for name, stats in time_interleaved(runners, budget_s=budget_s).items():
                result[name].setdefault(runtime, {})[key] = stats
    return result
