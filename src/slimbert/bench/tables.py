"""Markdown tables rendered from result records (``slimbert bench table``)."""

from __future__ import annotations

from slimbert.bench.records import BenchRecord
from slimbert.report.card import ReportCard


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def finetune_table(records: dict[str, BenchRecord]) -> str:
    lines = ["| experiment | task | dev metric | steps | training wall time | command |", "|---|---|---|---|---|---|"]
    for name, record in records.items():
        s = record.summary
        if s is not None:
            lines.append(f"| {name} | {s.task} | {_pct(s.metrics[s.main_metric])} ({s.main_metric}) | {s.steps} | "
                         f"{s.train_seconds / 60:.1f} min | `{record.command}` |")
    return "\n".join(lines)


def latency_table(records: dict[str, BenchRecord]) -> str:
    """Every runtime's median latency (ms) for baseline and compressed, with ratios vs baseline PyTorch fp32."""
    lines = [
        "| experiment | shape | baseline PyTorch | baseline ORT | compressed PyTorch | compressed ORT | "
        "speedup PyTorch | speedup ORT (vs baseline PyTorch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, record in records.items():
        card = record.card
        if card is None:
            continue
        b, c = card.baseline, card.compressed
        for shape in c.latency_ms.get("pytorch", {}):
            ref = b.latency("pytorch", shape)
            cells = [ref, b.latency("onnxruntime", shape), c.latency("pytorch", shape), c.latency("onnxruntime", shape)]
            text = ["n/a" if v is None else f"{v:.1f}" for v in cells]
            ratios = [None if v is None or ref is None else ref / v for v in cells[2:]]
            lines.append(f"| {name} | {shape} | " + " | ".join(text) + " | " + " | ".join(_x(r) for r in ratios) + " |")
    return "\n".join(lines)


def training_cell(card: ReportCard) -> str:
    """Steps and training time of every step that trained (summed over resumes), or "none"."""
    runs = card.training_runs()
    if not runs:
        trained = [s for s in card.steps if s.training is None and s.trained]
        # Results recorded before per-run training times existed: the steps' wall time in this process.
        return f"{sum(s.seconds for s in trained) / 60:.1f} min (wall)" if trained else "none"
    return f"{sum(r.steps for r in runs):,} steps, {sum(r.train_seconds for r in runs) / 60:.1f} min"


def quality_size_table(records: dict[str, BenchRecord]) -> str:
    """Task metric (PyTorch and ONNX Runtime), sizes and FLOPs, baseline vs compressed."""
    lines = [
        "| experiment | metric baseline | compressed PyTorch | compressed ORT | size MB (ratio) | ONNX MB (ratio) | "
        "weights w/o embeddings MB (ratio) | params | GFLOPs (seq 128) | training |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, record in records.items():
        card = record.card
        if card is None:
            continue
        b, c, r = card.baseline, card.compressed, card.ratios
        metric = card.main_metric
        label = f"{metric} " if metric else ""
        lines.append(
            f"| {name} | {label}{_pct(b.metric(metric))} | {_pct(c.metric(metric))} | "
            f"{_pct(c.metric(metric, 'onnxruntime'))} | {b.size_mb:.1f} -> {c.size_mb:.1f} ({_x(r.size)}) | "
            f"{b.size_mb_onnx or 0:.1f} -> {c.size_mb_onnx or 0:.1f} ({_x(r.size_onnx)}) | "
            f"{b.size_mb_no_embeddings:.1f} -> {c.size_mb_no_embeddings:.1f} ({_x(r.size_no_embeddings)}) | "
            f"{b.params.total / 1e6:.1f}M -> {c.params.total / 1e6:.1f}M | "
            f"{b.flops / 1e9:.2f} -> {c.flops / 1e9:.2f} | {training_cell(card)} |"
        )
    return "\n".join(lines)
