"""The survey's Table 1 (Ganesh et al., TACL 2021) mirrored from measured results: one row per method (a
recipe, across tasks), its family, size with and without embeddings as % of the baseline, speedup over the
baseline's PyTorch fp32 latency on PyTorch / ONNX Runtime / OpenVINO at batch 1 and 32, the main metric on
each task and the average drop. Also the Pareto front used by the report's plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean

from slimbert.bench.records import BenchRecord
from slimbert.methods import get_method
from slimbert.report.card import ReportCard

RUNTIMES = ("pytorch", "onnxruntime", "openvino")
SHAPES = ("b1s128", "b32s128")


def families(card: ReportCard) -> list[str]:
    """The survey families of a recipe's steps, in order, without repeats."""
    out: list[str] = []
    for step in card.recipe.get("steps", []):
        try:
            family = get_method(step["method"]).family
        except Exception:  # a method from another slimbert version
            family = "unknown"
        if family not in out:
            out.append(family)
    return out


def methods_of(card: ReportCard) -> list[str]:
    return [step["method"] for step in card.recipe.get("steps", [])]


def method_label(record: BenchRecord) -> str:
    """The experiment's name without its task suffix (``heads-40-sst2`` -> ``heads-40``)."""
    name, task = record.name, record.experiment.task
    return name[: -len(task) - 1] if task and name.endswith("-" + task) else name


def speedup(card: ReportCard, runtime: str, shape: str) -> float | None:
    """The baseline's PyTorch fp32 latency over the compressed model's on ``runtime`` (None: not timed)."""
    reference, value = card.baseline.latency("pytorch", shape), card.compressed.latency(runtime, shape)
    return reference / value if reference and value else None


def drop_points(card: ReportCard) -> float | None:
    metric = card.main_metric
    base, comp = card.baseline.metric(metric), card.compressed.metric(metric)
    return None if base is None or comp is None else (base - comp) * 100


@dataclass
class SurveyRow:
    method: str
    family: str
    size_pct: float | None = None
    size_no_embeddings_pct: float | None = None
    speedups: dict[str, float] = field(default_factory=dict)  # "onnxruntime b1s128" -> x
    metrics: dict[str, float] = field(default_factory=dict)  # task -> main metric (%)
    drops: dict[str, float] = field(default_factory=dict)  # task -> points lost
    experiments: list[str] = field(default_factory=list)

    @property
    def average_drop(self) -> float | None:
        return mean(self.drops.values()) if self.drops else None


def survey_rows(records: dict[str, BenchRecord]) -> tuple[list[SurveyRow], list[str]]:
    """Rows (one per method, tasks merged) and the tasks seen, from compress records that were evaluated."""
    rows: dict[str, SurveyRow] = {}
    tasks: list[str] = []
    for name, record in sorted(records.items()):
        card = record.card
        if card is None or not card.compressed.metrics:
            continue
        label = method_label(record)
        row = rows.setdefault(label, SurveyRow(method=label, family=" + ".join(families(card)) or "none"))
        row.experiments.append(name)
        task = card.task
        if task not in tasks:
            tasks.append(task)
        metric = card.main_metric
        row.metrics[task] = card.compressed.metric(metric) * 100
        if (drop := drop_points(card)) is not None:
            row.drops[task] = drop
        if row.size_pct is None or task == "sst2":  # sizes and speed from the SST-2 run when there is one
            row.size_pct = 100 * card.compressed.size_mb / card.baseline.size_mb
            row.size_no_embeddings_pct = 100 * card.compressed.size_mb_no_embeddings / card.baseline.size_mb_no_embeddings
            row.speedups = {f"{rt} {shape}": s for rt in RUNTIMES for shape in SHAPES
                            if (s := speedup(card, rt, shape)) is not None}
    return list(rows.values()), tasks


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, quality) that no other point beats on both (lower cost, higher quality)."""
    front = []
    for i, (cost, quality) in enumerate(points):
        dominated = any(c <= cost and q >= quality and (c < cost or q > quality) for j, (c, q) in enumerate(points)
                        if j != i)
        if not dominated:
            front.append(i)
    return front
