"""Curves rendered from result JSONs (``slimbert bench plot``): one PNG per figure named in experiments'
``plot:`` blocks, one line per series, e.g. accuracy vs sparsity for magnitude / movement / lottery, or
accuracy vs fraction of heads removed.

Each figure has three panels sharing the x axis: the main dev metric of the compressed model (PyTorch,
with the baseline as a dashed line), the artifact's size on disk, and the measured latency at one
batch x sequence shape on ONNX Runtime (solid) and PyTorch (dotted). Nothing is interpolated: points
are the experiments that ran.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from slimbert.bench.records import BenchRecord
from slimbert.report.card import ModelMeasurements

LATENCY_SHAPE = "b1s128"


def _latency(info: ModelMeasurements, runtime: str) -> float | None:
    return info.latency(runtime, LATENCY_SHAPE)


def _points(records: dict[str, BenchRecord]) -> dict[str, dict[str, list[dict]]]:
    """``{figure: {series: [point, ...]}}`` from compress results with a ``plot`` block, sorted by x."""
    figures: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for name, record in records.items():
        plot, card = record.experiment.plot, record.card
        if plot is None or card is None:
            continue
        baseline, compressed = card.baseline, card.compressed
        metric = card.main_metric
        figures[plot.figure][plot.series].append({
            "name": name,
            "x": plot.x,
            "x_label": plot.x_label,
            "metric": metric,
            "value": compressed.metric(metric),
            "baseline": baseline.metric(metric),
            "size_mb": compressed.size_mb,
            "baseline_size_mb": baseline.size_mb,
            "latency_ms": _latency(compressed, "onnxruntime"),
            "baseline_latency_ms": _latency(baseline, "onnxruntime"),
            "pytorch_ms": _latency(compressed, "pytorch"),
            "baseline_pytorch_ms": _latency(baseline, "pytorch"),
        })
    return {fig: {s: sorted(pts, key=lambda p: p["x"]) for s, pts in series.items()} for fig, series in figures.items()}


def _draw(ax, series: dict[str, list[dict]], key: str, base_key: str, scale: float, linestyle: str = "-",
          colors: dict[str, str] | None = None) -> dict[str, str]:
    """One line per series of ``p[key] * scale`` and a grey line at the baseline; return the line colours."""
    baselines = [p[base_key] for pts in series.values() for p in pts if p[base_key] is not None]
    if baselines:
        ax.axhline(baselines[0] * scale, color="grey", linestyle="--" if linestyle == "-" else linestyle,
                   label="baseline" if linestyle == "-" else None)
    colors = dict(colors or {})
    for name, pts in series.items():
        xy = [(p["x"], p[key] * scale) for p in pts if p[key] is not None]
        if xy:
            line, = ax.plot(*zip(*xy), marker="o" if linestyle == "-" else ".", linestyle=linestyle, color=colors.get(name),
                            label=name if linestyle == "-" else None)
            colors[name] = line.get_color()
    return colors


def plot_figure(series: dict[str, list[dict]], title: str, path: str | Path) -> Path:
    """Draw one figure (accuracy, size, latency vs x; a line per series) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    first = next(iter(series.values()))[0]
    fig, (acc, size, latency) = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = _draw(acc, series, "value", "baseline", 100.0)
    acc.set_ylabel(f"dev {first['metric'] or 'metric'} (PyTorch)")
    _draw(size, series, "size_mb", "baseline_size_mb", 1.0, colors=colors)
    size.set_ylabel("size on disk (MB)")
    _draw(latency, series, "latency_ms", "baseline_latency_ms", 1.0, colors=colors)
    _draw(latency, series, "pytorch_ms", "baseline_pytorch_ms", 1.0, linestyle=":", colors=colors)
    latency.set_ylabel(f"latency ms ({LATENCY_SHAPE}): ORT solid, PyTorch dotted")
    if not any(p[key] is not None for pts in series.values() for p in pts for key in ("latency_ms", "pytorch_ms")):
        latency.text(0.5, 0.5, "latency not measured\n(experiments run with --no-latency)", ha="center", va="center",
                     transform=latency.transAxes)  # an empty panel would look like a plotting bug
        latency.set_yticks([])
    for ax in (acc, size, latency):
        ax.set_xlabel(first["x_label"] or "x")
        ax.grid(alpha=0.3)
    acc.legend(loc="best", fontsize="small", framealpha=0.6)  # many series: keep it small, away from the points
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_results(records: dict[str, BenchRecord], out_dir: str | Path) -> list[Path]:
    """Render every figure named by the results' experiments into ``out_dir/<figure>.png``."""
    return [plot_figure(series, figure, Path(out_dir) / f"{figure}.png") for figure, series in _points(records).items()]
