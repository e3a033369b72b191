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


def compress_table(records: dict[str, dict]) -> str:
    """One row per experiment and shape: metric delta, size ratios, latency ratios vs PyTorch fp32 eager."""
    lines = [
        "| experiment | metric: baseline -> compressed (PyTorch / ORT) | size MB: baseline -> compressed (ratio) | "
        "encoder weights MB (ratio) | shape | PyTorch fp32 ms | compressed PyTorch ms (speedup) | "
        "compressed ORT ms (speedup vs PyTorch fp32) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, record in records.items():
        if record["experiment"]["kind"] != "compress":
            continue
        rep = record["result"]
        b, c, ratios = rep["baseline"], rep["compressed"], rep["ratios"]
        if b["metrics"]:
            metric = next(iter(b["metrics"]))
            metric_cell = (f"{metric} {_pct(b['metrics'][metric])} -> {_pct(c['metrics'].get(metric))} / "
                           f"{_pct(c.get('metrics_onnx', {}).get(metric))}")
        else:
            metric_cell = "not measured (random weights)"
        size_cell = f"{b['size_mb']:.1f} -> {c['size_mb']:.1f} ({_x(ratios['size'])})"
        enc_cell = f"{b['size_mb_no_embeddings']:.1f} -> {c['size_mb_no_embeddings']:.1f} ({_x(ratios['size_no_embeddings'])})"
        for key in c.get("latency_ms", {}).get("pytorch", {}):
            pt = _ms(b["latency_ms"], "pytorch", key)
            cpt = _ms(c["latency_ms"], "pytorch", key)
            cort = _ms(c["latency_ms"], "onnxruntime", key)
            lines.append(
                f"| {name} | {metric_cell} | {size_cell} | {enc_cell} | {key} | {pt:.1f} | "
                f"{cpt:.1f} ({_x(ratios['speedup']['pytorch'][key])}) | "
                f"{'n/a' if cort is None else f'{cort:.1f}'} ({_x(ratios['speedup'].get('onnxruntime_vs_pytorch_fp32', {}).get(key))}) |"
            )
            metric_cell = size_cell = enc_cell = '"'
    return "\n".join(lines)
