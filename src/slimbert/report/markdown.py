"""``report.md``: the report card (:class:`~slimbert.report.card.ReportCard`) for people."""

from __future__ import annotations

from typing import Any

from slimbert.report.card import MeasuredClaim, ReportCard


def claim_status(measured: MeasuredClaim) -> str:
    """"simulated only", "realized: 2.10x smaller", "partly realized: faster at b32s128 1.30x; no gain at ...", ..."""
    if not measured.claim.realized:
        return "simulated only"
    if measured.measured_gain is None:
        return "realized (not measured)"
    if measured.speedup is None:
        ratio = measured.size_ratio
        return f"realized: {ratio:.2f}x smaller" if measured.measured_gain else f"no measured gain ({fmt(ratio)}x)"
    gains = [f"{k} {v:.2f}x" for k, v in measured.speedup.items() if v is not None and v > 1.0]
    losses = [f"{k} {v:.2f}x" for k, v in measured.speedup.items() if v is not None and v <= 1.0]
    parts = []
    if gains:
        parts.append("faster at " + ", ".join(gains))
    if losses:
        parts.append("no gain at " + ", ".join(losses))
    return ("realized: " if not losses else "partly realized: " if gains else "not realized here: ") + "; ".join(parts)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x100(value: float | None) -> float | None:
    return None if value is None else value * 100


def _metric_rows(card: ReportCard) -> list[str]:
    rows = []
    b, c = card.baseline, card.compressed
    for name, value in b.metrics.items():
        cv = c.metric(name)
        delta = None if cv is None else (cv - value) * 100
        rows.append(f"| {name} | {value * 100:.2f} | {fmt(_x100(cv))} | {fmt(_x100(c.metric(name, 'onnxruntime')))} | "
                    f"{fmt(_x100(c.metric(name, 'openvino')))} | {fmt(delta)} |")
    return rows


def _stage_rows(card: ReportCard) -> list[str]:
    """The waterfall: the input model, then the model after each step, with what each step changed."""
    metric = card.main_metric
    b = card.baseline
    rows = [f"| input | {card.model} | {fmt(_x100(b.metric(metric)))} | | {fmt(b.weights_mb)} | "
            f"{fmt(b.flops / 1e9, 3)} | | |"]
    previous = (b.metric(metric), b.weights_mb, b.flops)
    for stage in card.stages:
        value = stage.metrics.get(metric) if metric else None
        delta = None if value is None or previous[0] is None else (value - previous[0]) * 100
        gate = ""
        if stage.gate is not None:
            g = stage.gate
            gate = (f"{'passed' if g.passed else 'failed'} on {g.runtime}: {-g.drop:+.2f} vs {g.against} "
                    f"(max {g.max_drop})" + (f"; fallback: {g.fallback}" if g.fallback else ""))
        if stage.flags:
            gate = "; ".join(filter(None, [gate, *stage.flags]))
        rows.append(f"| {stage.step} | {stage.method} | {fmt(_x100(value))} ({fmt(delta)}) | | "
                    f"{fmt(stage.size_mb)} ({fmt(previous[1] / stage.size_mb if stage.size_mb else None)}x smaller) | "
                    f"{fmt(stage.flops / 1e9, 3)} ({fmt(previous[2] / stage.flops if stage.flops else None)}x fewer) | "
                    f"{fmt(stage.latency_ms)} | {gate} |")
        previous = (value, stage.size_mb, stage.flops)
    return rows


def render_markdown(card: ReportCard) -> str:
    """A human-readable report card."""
    b, c, r = card.baseline, card.compressed, card.ratios
    steps = ", ".join(s.method for s in card.steps)
    lines = [f"# slimbert report: {card.recipe_name} on {card.task}", "", f"Model `{card.model}`; steps: {steps}.", ""]
    if card.start_from:
        lines[-1:-1] = [f"The recipe started from `{card.start_from}` and used the model above as its teacher."]
    if b.metrics:
        lines += [
            "## Task metrics (x100), evaluated on "
            + ", ".join(f"{n} {split} examples" for split, n in card.eval_examples.items()),
            "",
            "| metric | baseline | compressed (PyTorch) | compressed (ONNX Runtime) | compressed (OpenVINO) | "
            "delta (points, PyTorch) |",
            "|---|---|---|---|---|---|",
            *_metric_rows(card),
            "",
        ]
    else:
        lines += ["Task metrics not measured (shape-only run on random weights).", ""]
    lines += [
        "## Size and compute",
        "",
        "| | baseline | compressed | ratio |",
        "|---|---|---|---|",
        f"| size on disk, PyTorch artifact (MB) | {fmt(b.size_mb)} | {fmt(c.size_mb)} | {fmt(r.size)}x |",
        f"| size on disk, ONNX (MB) | {fmt(b.size_mb_onnx)} | {fmt(c.size_mb_onnx)} | {fmt(r.size_onnx)}x |",
        f"| size on disk, OpenVINO IR (MB) | {fmt(b.size_mb_openvino)} | {fmt(c.size_mb_openvino)} | |",
        f"| weights without embeddings (MB) | {fmt(b.size_mb_no_embeddings)} | {fmt(c.size_mb_no_embeddings)} | "
        f"{fmt(r.size_no_embeddings)}x |",
        f"| parameters | {fmt(b.params.total)} | {fmt(c.params.total)} | {fmt(r.params)}x |",
        f"| non-zero parameters | {fmt(b.params.nonzero)} | {fmt(c.params.nonzero)} | |",
        f"| GFLOPs per example (seq {card.flops_seq_len}) | {fmt(b.flops / 1e9, 3)} | {fmt(c.flops / 1e9, 3)} | "
        f"{fmt(r.flops)}x |",
        "",
    ]
    if card.serving_runtime:
        lines += [f"Served on **{card.serving_runtime}** ("
                  + ("named by the recipe" if card.recipe.get("runtime") else "the fastest measured") + ").", ""]
    if card.flags:
        lines += ["**Warnings:**", "", *[f"- {flag}" for flag in card.flags], ""]
    if card.stages:
        lines += ["## What each step bought and cost (PyTorch; the gate on its runtime)", "",
                  f"| step | method | {card.main_metric or 'metric'} (change) | | weights MB | GFLOPs | ms (b1) | "
                  "accuracy gate / flags |", "|---|---|---|---|---|---|---|---|", *_stage_rows(card), ""]
    if c.latency_ms:
        lines += [
            f"## Latency (ms, median of interleaved runs, {card.environment.threads} threads)",
            "",
            "| runtime | shape | baseline | compressed | speedup | vs baseline PyTorch fp32 |",
            "|---|---|---|---|---|---|",
        ]
        for runtime, by_shape in c.latency_ms.items():
            for shape in by_shape:
                lines.append(
                    f"| {runtime} | {shape} | {fmt(b.latency(runtime, shape))} | {fmt(c.latency(runtime, shape))} | "
                    f"{fmt(r.speedup[runtime][shape])}x | {fmt(r.speedup[runtime + '_vs_pytorch_fp32'][shape])}x |"
                )
        lines.append("")
    floors = card.compute_floors()
    if floors:
        lines += ["## How far from the hardware (latency / compute floor)", "",
                  "The floor is batch x FLOPs per example / the runtime's measured matrix-product peak in the precision "
                  "the model computes in there; 1.0 would be all time spent in matrix products at full speed.", "",
                  "| model | runtime | shape | precision | peak GOP/s | floor ms | latency / floor |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {f.model} | {f.runtime} | {f.shape} | {f.precision} | {f.peak_gops:.0f} | {f.floor_ms:.2f} | "
                  f"{f.ratio:.1f}x |" for f in floors]
        lines.append("")
    lines += ["## Which gains are real here", "", "| gain | runtime | status (measured vs baseline) | how |",
              "|---|---|---|---|"]
    for measured in card.measured_claims():
        claim = measured.claim
        lines.append(f"| {claim.gain} | {claim.runtime} | {claim_status(measured)} | {claim.detail} |")
    if card.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in card.notes]]
    env = card.environment
    lines += ["", f"Measured {env.date} on {env.cpu} ({env.cpu_count} cores), "
              f"torch {env.version('torch')}, onnxruntime {env.version('onnxruntime')}.", ""]
    return "\n".join(lines)
