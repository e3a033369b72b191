"""The report card: baseline vs compressed, with every gain marked realized or simulated.

``report.json`` keys: ``baseline`` and ``compressed`` (each with ``metrics``, ``size_mb``,
``size_mb_no_embeddings``, ``params``, ``flops``, ``latency_ms`` keyed by runtime then ``bXsY``),
``ratios``, ``claims``, ``steps`` (what ran, with configs), ``notes`` and ``environment``.
"""

from __future__ import annotations

from typing import Any


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def median(latency: dict, runtime: str, key: str) -> float | None:
    return latency.get(runtime, {}).get(key, {}).get("median_ms")


def compute_ratios(baseline: dict, compressed: dict) -> dict[str, Any]:
    """Compression ratios (baseline / compressed) and speedups (baseline latency / compressed latency).

    ``speedup.vs_pytorch_fp32`` compares each compressed runtime with the *baseline on PyTorch
    eager*, the reference every user starts from.
    """
    ratios: dict[str, Any] = {
        "size": _ratio(baseline["size_mb"], compressed["size_mb"]),
        "size_no_embeddings": _ratio(baseline["size_mb_no_embeddings"], compressed["size_mb_no_embeddings"]),
        "size_onnx": _ratio(baseline.get("size_mb_onnx"), compressed.get("size_mb_onnx")),
        "params": _ratio(baseline["params"]["total"], compressed["params"]["total"]),
        "flops": _ratio(baseline["flops"], compressed["flops"]),
        "speedup": {},
    }
    b_lat, c_lat = baseline.get("latency_ms", {}), compressed.get("latency_ms", {})
    for runtime in c_lat:
        for key in c_lat[runtime]:
            ratios["speedup"].setdefault(runtime, {})[key] = _ratio(median(b_lat, runtime, key), median(c_lat, runtime, key))
            ratios["speedup"].setdefault(f"{runtime}_vs_pytorch_fp32", {})[key] = _ratio(
                median(b_lat, "pytorch", key), median(c_lat, runtime, key))
    return ratios


def attach_measurements(claims: list[dict], baseline: dict, compressed: dict, ratios: dict) -> list[dict]:
    """Add what was measured to each claim, so a "realized" kernel that measured no faster says so.

    A size claim gets the on-disk ratio; a speed claim the speedup per shape on its runtime.
    ``measured_gain`` is True when the measurement shows the gain (size ratio or every speedup > 1).
    """
    out = []
    for claim in claims:
        claim = dict(claim)
        if claim["gain"] == "size":
            ratio = ratios["size_onnx"] if claim["runtime"] == "onnxruntime" else ratios["size"]
            claim["measured"] = {"size_ratio": ratio}
            claim["measured_gain"] = ratio is not None and ratio > 1.0
        elif claim["gain"] == "speed" and claim["runtime"] in ratios["speedup"]:
            speedups = ratios["speedup"][claim["runtime"]]
            claim["measured"] = {"speedup": speedups}
            claim["measured_gain"] = all(v is not None and v > 1.0 for v in speedups.values())
        out.append(claim)
    return out


def _claim_status(claim: dict) -> str:
    if not claim["realized"]:
        return "simulated only"
    if "measured_gain" not in claim:
        return "realized (not measured)"
    measured = claim["measured"]
    if "speedup" not in measured:
        ratio = measured["size_ratio"]
        return f"realized: {ratio:.2f}x smaller" if claim["measured_gain"] else f"no measured gain ({_fmt(ratio)}x)"
    gains = [f"{k} {v:.2f}x" for k, v in measured["speedup"].items() if v is not None and v > 1.0]
    losses = [f"{k} {v:.2f}x" for k, v in measured["speedup"].items() if v is not None and v <= 1.0]
    parts = []
    if gains:
        parts.append("faster at " + ", ".join(gains))
    if losses:
        parts.append("no gain at " + ", ".join(losses))
    return ("realized: " if not losses else "partly realized: " if gains else "not realized here: ") + "; ".join(parts)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _metric_rows(report: dict) -> list[str]:
    rows = []
    b, c = report["baseline"], report["compressed"]
    for name, value in b["metrics"].items():
        cv = c["metrics"].get(name)
        onnx = c.get("metrics_onnx", {}).get(name)
        delta = None if cv is None else (cv - value) * 100
        rows.append(f"| {name} | {value * 100:.2f} | {_fmt(cv * 100 if cv is not None else None)} | "
                    f"{_fmt(onnx * 100 if onnx is not None else None)} | {_fmt(delta)} |")
    return rows


def render_markdown(report: dict) -> str:
    """A human-readable report card."""
    b, c, r = report["baseline"], report["compressed"], report["ratios"]
    steps = ", ".join(s["method"] for s in report["steps"])
    lines = [
        f"# slimbert report: {report['recipe']['name']} on {report['task']}",
        "",
        f"Model `{report['model']}`; steps: {steps}.",
        "",
    ]
    if report.get("start_from"):
        lines[-1:-1] = [f"The recipe started from `{report['start_from']}` and used the model above as its teacher."]
    if b["metrics"]:
        lines += [
            "## Task metrics (x100), evaluated on "
            + ", ".join(f"{n} {split} examples" for split, n in report["eval_examples"].items()),
            "",
            "| metric | baseline | compressed (PyTorch) | compressed (ONNX Runtime) | delta (points) |",
            "|---|---|---|---|---|",
            *_metric_rows(report),
            "",
        ]
    else:
        lines += ["Task metrics not measured (shape-only run on random weights).", ""]
    lines += [
        "## Size and compute",
        "",
        "| | baseline | compressed | ratio |",
        "|---|---|---|---|",
        f"| size on disk, PyTorch artifact (MB) | {_fmt(b['size_mb'])} | {_fmt(c['size_mb'])} | {_fmt(r['size'])}x |",
        f"| size on disk, ONNX (MB) | {_fmt(b.get('size_mb_onnx'))} | {_fmt(c.get('size_mb_onnx'))} | {_fmt(r['size_onnx'])}x |",
        f"| weights without embeddings (MB) | {_fmt(b['size_mb_no_embeddings'])} | {_fmt(c['size_mb_no_embeddings'])} | "
        f"{_fmt(r['size_no_embeddings'])}x |",
        f"| parameters | {_fmt(b['params']['total'])} | {_fmt(c['params']['total'])} | {_fmt(r['params'])}x |",
        f"| non-zero parameters | {_fmt(b['params']['nonzero'])} | {_fmt(c['params']['nonzero'])} | |",
        f"| GFLOPs per example (seq {report['flops_seq_len']}) | {_fmt(b['flops'] / 1e9, 3)} | {_fmt(c['flops'] / 1e9, 3)} | "
        f"{_fmt(r['flops'])}x |",
        "",
    ]
    if c.get("latency_ms"):
        lines += [
            f"## Latency (ms, median of interleaved runs, {report['environment']['threads']} threads)",
            "",
            "| runtime | shape | baseline | compressed | speedup | vs baseline PyTorch fp32 |",
            "|---|---|---|---|---|---|",
        ]
        for runtime, by_shape in c["latency_ms"].items():
            for key, stats in by_shape.items():
                lines.append(
                    f"| {runtime} | {key} | {_fmt(median(b['latency_ms'], runtime, key))} | {_fmt(stats['median_ms'])} | "
                    f"{_fmt(r['speedup'][runtime][key])}x | {_fmt(r['speedup'][runtime + '_vs_pytorch_fp32'][key])}x |"
                )
        lines.append("")
    lines += ["## Which gains are real here", "", "| gain | runtime | status (measured vs baseline) | how |",
              "|---|---|---|---|"]
    for claim in report["claims"]:
        lines.append(f"| {claim['gain']} | {claim['runtime']} | {_claim_status(claim)} | {claim['detail']} |")
    if report["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    env = report["environment"]
    lines += ["", f"Measured {env['date']} on {env['cpu']} ({env['cpu_count']} cores), "
              f"torch {env['versions']['torch']}, onnxruntime {env['versions']['onnxruntime']}.", ""]
    return "\n".join(lines)
