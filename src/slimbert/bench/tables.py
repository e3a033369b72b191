"""Markdown tables rendered from result JSONs (``slimbert bench table``)."""

from __future__ import annotations


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _ms(latency: dict, runtime: str, key: str) -> float | None:
    return latency.get(runtime, {}).get(key, {}).get("median_ms")


def finetune_row(name: str, record: dict) -> str:
    r = record["result"]
    metric = r["main_metric"]
    return (f"| {name} | {r['task']} | {_pct(r['metrics'][metric])} ({metric}) | {r['steps']} | "
            f"{r['train_seconds'] / 60:.1f} min | `{record['command']}` |")


def finetune_table(records: dict[str, dict]) -> str:
    lines = ["| experiment | task | dev metric | steps | training wall time | command |", "|---|---|---|---|---|---|"]
    lines += [finetune_row(n, r) for n, r in records.items() if r["experiment"]["kind"] == "finetune"]
    return "\n".join(lines)


def latency_table(records: dict[str, dict]) -> str:
    """Every runtime's median latency (ms) for baseline and compressed, with ratios vs baseline PyTorch fp32."""
    lines = [
        "| experiment | shape | baseline PyTorch | baseline ORT | compressed PyTorch | compressed ORT | "
        "speedup PyTorch | speedup ORT (vs baseline PyTorch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, record in records.items():
        if record["experiment"]["kind"] != "compress":
            continue
        b, c = record["result"]["baseline"]["latency_ms"], record["result"]["compressed"]["latency_ms"]
        for key in c.get("pytorch", {}):
            ref = _ms(b, "pytorch", key)
            cells = [_ms(b, "pytorch", key), _ms(b, "onnxruntime", key), _ms(c, "pytorch", key), _ms(c, "onnxruntime", key)]
            text = ["n/a" if v is None else f"{v:.1f}" for v in cells]
            ratios = [None if v is None or ref is None else ref / v for v in cells[2:]]
            lines.append(f"| {name} | {key} | " + " | ".join(text) + " | " + " | ".join(_x(r) for r in ratios) + " |")
    return "\n".join(lines)


def training_cell(report: dict) -> str:
    """Steps and training time of every step that trained (summed over resumes), or "none"."""
    runs = [run for step in report.get("steps", []) for run in step.get("training", [])]
    if not runs:
        trained = [s for s in report.get("steps", []) if "training" not in s and s.get("config", {}).get("train")]
        # Results recorded before per-run training times existed: the steps' wall time in this process.
        return f"{sum(s['seconds'] for s in trained) / 60:.1f} min (wall)" if trained else "none"
    return f"{sum(r['steps'] for r in runs):,} steps, {sum(r['train_seconds'] for r in runs) / 60:.1f} min"


def quality_size_table(records: dict[str, dict]) -> str:
    """Task metric (PyTorch and ONNX Runtime), sizes and FLOPs, baseline vs compressed."""
    lines = [
        "| experiment | metric baseline | compressed PyTorch | compressed ORT | size MB (ratio) | ONNX MB (ratio) | "
        "weights w/o embeddings MB (ratio) | params | GFLOPs (seq 128) | training |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, record in records.items():
        if record["experiment"]["kind"] != "compress":
            continue
        rep = record["result"]
        b, c, r = rep["baseline"], rep["compressed"], rep["ratios"]
        metric = next(iter(b["metrics"]), None)
        mb = _pct(b["metrics"].get(metric)) if metric else "n/a"
        mc = _pct(c["metrics"].get(metric)) if metric else "n/a"
        mo = _pct(c.get("metrics_onnx", {}).get(metric)) if metric else "n/a"
        label = f"{metric} " if metric else ""
        lines.append(
            f"| {name} | {label}{mb} | {mc} | {mo} | {b['size_mb']:.1f} -> {c['size_mb']:.1f} ({_x(r['size'])}) | "
            f"{b.get('size_mb_onnx', 0):.1f} -> {c.get('size_mb_onnx', 0):.1f} ({_x(r.get('size_onnx'))}) | "
            f"{b['size_mb_no_embeddings']:.1f} -> {c['size_mb_no_embeddings']:.1f} ({_x(r['size_no_embeddings'])}) | "
            f"{b['params']['total'] / 1e6:.1f}M -> {c['params']['total'] / 1e6:.1f}M | "
            f"{b['flops'] / 1e9:.2f} -> {c['flops'] / 1e9:.2f} | {training_cell(rep)} |"
        )
    return "\n".join(lines)
