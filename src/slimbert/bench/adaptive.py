"""``slimbert bench adaptive``: what early exit and token dropping buy on real sentences, on each runtime.

For one adaptive artifact (``early-exit`` / ``token-dropping`` steps) and the task's dev set, every setting (the
full-depth static path, the artifact's own settings, and threshold / patience / retention sweeps) is run
through the adaptive runner on PyTorch and on ONNX Runtime's segments, at batch 1 and 32:

* at the dev sentences' **natural lengths** (length-sorted batches, dynamic padding: what a server does), on
  the whole dev set: the metric, average exit layer, tokens per layer, FLOPs per example of the path taken,
  and the wall time per example;
* **padded to the run's sequence length** (PoWER-BERT's setting) on the first ``padded_examples`` sentences: the
  wall time only. Token dropping discards padding after the first layer, so its gain there includes what plain
  dynamic padding already gives: compare it with the static row at natural lengths.

Every path is warmed up on its first batches; then settings are timed in interleaved rounds (every setting once
per round; the first round's outputs give the metrics) and the fastest round is kept: the machine is noisy and
rounds see the same load. On ONNX Runtime the static row is the artifact's fused full graph
(``model.onnx``) when it has one, else the segments at full depth.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from slimbert.data.batching import length_sorted_batches
from slimbert.data.encoding import EncodedDataset, PadCollator
from slimbert.data.metrics import compute_metrics
from slimbert.data.tasks import get_task
from slimbert.environment import environment
from slimbert.errors import SlimbertError
from slimbert.export.onnx import onnx_logits, onnx_session
from slimbert.export.onnx_segments import ADAPTIVE_DIR, OnnxSegments
from slimbert.measure.flops import adaptive_flops, flops_per_example
from slimbert.measure.latency import set_threads
from slimbert.models.adaptive.criteria import CRITERIA, ExitCriterion
from slimbert.models.adaptive.exit_heads import exit_heads_of
from slimbert.models.adaptive.runner import AdaptiveSettings, run_adaptive
from slimbert.models.adaptive.segments import TorchSegments
from slimbert.models.artifact import ONNX_NAME, load_compressed
from slimbert.models.shape import shape_of
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

BATCHES = (1, 32)
RUNTIMES = ("pytorch", "onnxruntime")
WARMUP_BATCHES = 8


def parse_sweep(spec: str) -> list[ExitCriterion]:
    """``entropy:0.1,0.2`` / ``confidence:0.9`` / ``patience:1,2,3`` -> exit criteria."""
    kind, _, values = spec.partition(":")
    if kind not in CRITERIA or not values:
        raise SlimbertError(f"--exit {spec!r}: expected CRITERION:V1,V2,... with CRITERION one of {', '.join(CRITERIA)}")
    try:
        numbers = [float(v) for v in values.split(",")]
    except ValueError:
        raise SlimbertError(f"--exit {spec!r}: the values must be numbers") from None
    if kind == "patience":
        return [ExitCriterion("patience", patience=int(v)).validate() for v in numbers]
    return [ExitCriterion(kind, threshold=v).validate() for v in numbers]


def parse_retention(spec: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in spec.split(","))
    except ValueError:
        raise SlimbertError(f"--retention {spec!r}: expected fractions such as 0.9,0.8,0.7") from None


def label(settings: AdaptiveSettings) -> str:
    if not settings.active:
        return "static"
    parts = []
    if settings.exit is not None:
        e = settings.exit
        parts.append(f"patience {e.patience}" if e.kind == "patience" else f"{e.kind} {e.threshold:g}")
    if settings.retention:
        parts.append("retention " + "/".join(f"{r:g}" for r in settings.retention))
    return ", ".join(parts)


def _batches(dataset: EncodedDataset, batch_size: int, pad: int, names, pad_to: int | None) -> list[tuple[list[int], dict]]:
    collate = PadCollator(pad)
    out = []
    for idx in length_sorted_batches(dataset, batch_size):
        batch = collate([dataset[i] for i in idx])
        batch.pop("labels")
        if pad_to is not None and batch["input_ids"].shape[1] < pad_to:
            extra = pad_to - batch["input_ids"].shape[1]
            batch = {k: torch.nn.functional.pad(v, (0, extra), value=pad if k == "input_ids" else 0)
                     for k, v in batch.items()}
        out.append((idx, {k: v for k, v in batch.items() if k in names}))
    return out


def _settings_to_measure(recorded: AdaptiveSettings, exits: list[ExitCriterion],
                         retentions: list[tuple[float, ...]], layers: int) -> list[AdaptiveSettings]:
    """Static first, then the artifact's own settings, then each sweep point (duplicates dropped)."""
    candidates = [AdaptiveSettings(), recorded]
    candidates += [replace(recorded, exit=e) for e in exits]
    candidates += [replace(recorded, retention=r).validate(layers) for r in retentions]
    unique: dict[str, AdaptiveSettings] = {}
    for s in candidates:
        unique.setdefault(label(s), s)
    return list(unique.values())


def _collect(outs: list[tuple[list[int], Any]], count: int, layers: int, lengths: np.ndarray):
    """Logits (N, C), exit layer (N,) and tokens per layer (N, L) in dataset order from a pass's outputs (a
    static pass, which returns plain logits, ran every layer on every token)."""
    logits = exit_layer = tokens = None
    for idx, out in outs:
        values = out.logits if hasattr(out, "logits") else out
        if logits is None:
            logits = np.zeros((count, values.shape[-1]), dtype=np.float32)
            exit_layer = np.full(count, layers, dtype=np.int64)
            tokens = np.repeat(lengths[:, None], layers, axis=1)
        logits[idx] = values.float().numpy()
        if hasattr(out, "exit_layer"):
            exit_layer[idx] = out.exit_layer.numpy()
            tokens[idx] = out.tokens.numpy()
    return logits, exit_layer, tokens


def run_adaptive_bench(artifact: Path, task: str, *, exits: list[ExitCriterion], retentions: list[tuple[float, ...]],
                       data_dir: str | None = None, threads: int = 2, rounds: int = 2, padded_examples: int = 256,
                       runtimes: tuple[str, ...] = RUNTIMES, batches: tuple[int, ...] = BATCHES,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every setting on every runtime and batch size; return the record (``rows``)."""
    bundle = load_compressed(artifact)
    recorded = AdaptiveSettings.from_dict(bundle.adaptive)
    if not recorded.active:
        raise SlimbertError(f"{artifact} is not an adaptive artifact (no early-exit or token-dropping step)")
    heads = exit_heads_of(bundle.model)
    if exits and heads is None:
        raise SlimbertError(f"--exit needs exit heads, and {artifact} has none: it was made without an early-exit step")
    data = TaskDataset(get_task(task), RunSettings(data_dir=data_dir))
    data.settings, _ = data.settings.for_model(shape_of(bundle.model).max_positions, str(artifact))
    seq_len = data.settings.seq_len
    dev = next(iter(data.eval_sets(bundle.tokenizer).values()))
    pad = bundle.tokenizer.pad_token_id or 0
    set_threads(threads)
    segment_sets = {"pytorch": TorchSegments(bundle.model.eval(), capture_attention=True)}
    if "onnxruntime" in runtimes:
        segment_sets["onnxruntime"] = OnnxSegments(artifact / ADAPTIVE_DIR, threads)
    layers = segment_sets["pytorch"].num_layers
    measured = _settings_to_measure(recorded, exits, retentions, layers)
    if "onnxruntime" in segment_sets:  # refuse now rather than minutes into the timing
        scored = set(segment_sets["onnxruntime"].scoring_layers)
        asked = {i for s in measured for i in s.scoring_layers(layers)}
        if asked - scored:
            raise SlimbertError(f"the ONNX export of {artifact} scores tokens after layers "
                                f"{sorted(i + 1 for i in scored) or 'none'}, and the schedules ask for layers "
                                f"{sorted(i + 1 for i in asked - scored)}: time them with --runtimes pytorch, or "
                                "compress with a schedule that long (its export then scores those layers)")
    fused = onnx_session(artifact / ONNX_NAME, threads, spinning=False) if (artifact / ONNX_NAME).is_file() else None
    exit_head_flops = heads.flops_per_exit() if heads is not None else 0
    exit_layers = segment_sets["pytorch"].exit_layers
    modes = {"natural": (dev, None)}
    if padded_examples > 0:  # 0: natural lengths only
        modes["padded"] = (dev.subset(padded_examples), seq_len)
    prepared = {(b, mode): _batches(modes[mode][0], b, pad, bundle.arch.inputs, modes[mode][1])
                for b in batches for mode in modes}

    def runner(runtime: str, s: AdaptiveSettings) -> tuple[Callable, str]:
        if not s.active and runtime == "pytorch":
            return (lambda batch: bundle.model(**batch).logits), "model forward"
        if not s.active and fused is not None:
            return (lambda batch: torch.from_numpy(onnx_logits(fused, batch))), "fused full graph (model.onnx)"
        return (lambda batch: run_adaptive(segment_sets[runtime], batch, s)), "adaptive runner"

    rows: dict[tuple, dict[str, Any]] = {}
    plan = [(rt, b, mode, i) for rt in runtimes for b in batches for mode in modes for i in range(len(measured))]
    lengths = np.asarray(dev.lengths())
    started = time.perf_counter()
    # Every path is warmed up on a few batches first; then rounds 1..rounds are timed, interleaved, and round 1's
    # outputs give the metrics.
    log(f"adaptive bench: warm-up ({len(plan)} paths)")
    with torch.no_grad():
        for runtime, b, mode, i in plan:
            run, _ = runner(runtime, measured[i])
            for _, batch in prepared[(b, mode)][:WARMUP_BATCHES]:
                run(batch)
    for r in range(1, rounds + 1):
        log(f"adaptive bench: timed round {r}/{rounds} ({len(plan)} passes)")
        for key in plan:
            runtime, b, mode, i = key
            s = measured[i]
            run, path = runner(runtime, s)
            batches_ = prepared[(b, mode)]
            n = sum(len(idx) for idx, _ in batches_)
            t0 = time.perf_counter()
            with torch.no_grad():
                outs = [(idx, run(batch)) for idx, batch in batches_]
            ms = (time.perf_counter() - t0) * 1000 / n
            row = rows.setdefault(key, {"setting": label(s), "settings": s.to_dict(), "runtime": runtime, "batch": b,
                                        "lengths": mode, "path": path, "examples": n, "ms_per_example": ms})
            row["ms_per_example"] = min(row["ms_per_example"], ms)
            if r > 1 or mode != "natural":
                continue
            logits, exit_layer, tokens = _collect(outs, len(dev), layers, lengths)
            row["metrics"] = compute_metrics(data.task, logits.argmax(-1), np.asarray(dev.labels))
            row["predictions"] = logits.argmax(-1)
            row["avg_exit_layer"] = float(exit_layer.mean())
            row["avg_tokens_per_layer"] = tokens.mean(0).tolist()
            row["flops_per_example"] = float(np.mean([
                adaptive_flops(bundle.model, list(tokens[j]), int(exit_layer[j]),
                               sum(1 for e in exit_layers if s.exit is not None and s.min_exit_layer <= e < exit_layer[j]),
                               exit_head_flops) for j in range(len(dev))]))
    for (runtime, b, mode, i), row in rows.items():
        row["speedup_vs_static"] = rows[(runtime, b, mode, 0)]["ms_per_example"] / row["ms_per_example"]
        row["speedup_vs_static_natural"] = rows[(runtime, b, "natural", 0)]["ms_per_example"] / row["ms_per_example"]
        if mode == "natural":
            row["agreement_with_static"] = float(np.mean(row["predictions"] == rows[(runtime, b, mode, 0)]["predictions"]))
            # The same setting at the smallest batch: fp32 decisions do not depend on the batch; int8 whose activation
            # scales span the batch (ONNX Runtime's dynamic quantization) may.
            alone = rows[(runtime, min(batches), mode, i)]["predictions"]
            row["agreement_with_smallest_batch"] = float(np.mean(row["predictions"] == alone))
    for row in rows.values():
        row.pop("predictions", None)
    return {"artifact": str(artifact), "task": data.task.name, "metric": data.task.main_metric, "seq_len": seq_len,
            "dev_examples": len(dev), "padded_examples": min(max(padded_examples, 0), len(dev)), "rounds": rounds,
            "threads": threads, "static_flops_at_seq_len": flops_per_example(bundle.model, seq_len),
            "seconds": round(time.perf_counter() - started, 1), "rows": [rows[k] for k in sorted(rows)],
            "environment": environment(threads)}


def adaptive_table(record: dict[str, Any]) -> str:
    """Markdown: one line per setting x runtime x batch (natural lengths), with the padded timing beside it."""
    metric = record["metric"]
    rows = record["rows"]
    lines = [f"| setting | runtime | batch | {metric} | avg exit layer | tokens into last layer | GFLOPs/example | "
             "ms/example natural (speedup) | ms/example padded (speedup vs padded static / vs natural static) | "
             "decisions as at batch 1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["lengths"] != "natural":
            continue
        padded = next((p for p in rows if p["lengths"] == "padded" and p["setting"] == r["setting"]
                       and p["runtime"] == r["runtime"] and p["batch"] == r["batch"]), None)
        pad_cell = (f"{padded['ms_per_example']:.2f} ({padded['speedup_vs_static']:.2f}x / "
                    f"{padded['speedup_vs_static_natural']:.2f}x)") if padded else "n/a"
        lines.append(f"| {r['setting']} | {r['runtime']} | {r['batch']} | {r['metrics'][metric] * 100:.2f} | "
                     f"{r['avg_exit_layer']:.2f} | {r['avg_tokens_per_layer'][-1]:.1f} | "
                     f"{r['flops_per_example'] / 1e9:.3f} | {r['ms_per_example']:.2f} ({r['speedup_vs_static']:.2f}x) | "
                     f"{pad_cell} | {r['agreement_with_smallest_batch'] * 100:.2f}% |")
    return "\n".join(lines)


def plot_adaptive(record: dict[str, Any], path: Path) -> None:
    """Accuracy vs average latency per example (natural lengths), one panel per batch size, a line per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = record["metric"]
    batches = sorted({r["batch"] for r in record["rows"]})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
    for ax, b in zip(axes[0], batches):
        for runtime, marker in (("pytorch", "o"), ("onnxruntime", "s")):
            pts = [r for r in record["rows"] if r["batch"] == b and r["runtime"] == runtime and r["lengths"] == "natural"]
            if not pts:
                continue
            ax.scatter([p["ms_per_example"] for p in pts], [p["metrics"][metric] * 100 for p in pts], marker=marker,
                       label=runtime)
            for p in pts:
                ax.annotate(p["setting"], (p["ms_per_example"], p["metrics"][metric] * 100), fontsize=6)
        ax.set_xlabel("ms per example (dev sentences, natural lengths)")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"batch {b}")
        ax.legend()
    fig.suptitle(f"{record['task']}: accuracy vs latency of adaptive settings ({Path(record['artifact']).name})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_record(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
