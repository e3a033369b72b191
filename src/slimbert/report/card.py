"""The report card of a ``compress`` run: one typed record, versioned, written as ``report.json``.

It is built once, by :func:`slimbert.api.compress`, and read by the Markdown report
(:mod:`slimbert.report.markdown`), the bench tables and plots and ``bench retime``; nothing else
reads a report by string keys. Every field:

``schema_version``
    :data:`SCHEMA_VERSION`; JSON files without the key are version 1 (the same fields, written
    before the card was typed). :meth:`ReportCard.from_dict` reads both.
``model`` / ``start_from``
    the input model (the baseline, and the teacher of distillation steps) and, when the recipe
    started from another checkpoint (``compress --start-from``), that one.
``task``, ``recipe``
    the task name and the recipe as run (plain data, as a recipe file spells it).
``eval_examples``
    examples per evaluation split ({} when metrics were not measured).
``flops_seq_len``
    the sequence length FLOPs are counted at.
``baseline`` / ``compressed``
    :class:`ModelMeasurements` of the input model and of the saved, reloaded artifact, on every runtime it
    converted to (PyTorch, ONNX Runtime, OpenVINO from version 3).
``claims``
    per gain (size, speed) and runtime, whether the method says it is real there or only simulated,
    and why (:class:`Claim`); what was measured is attached by :meth:`ReportCard.measured_claims`.
``notes``
    what the steps and the export had to say (in order).
``steps``
    one :class:`StepRecord` per recipe step: method, family, the step's fields, wall time, training runs.
``environment``
    the machine and library versions (:class:`Environment`).
``stages`` (version 3)
    the model after each step (:class:`Stage`: metrics, size, FLOPs, a quick latency, its accuracy gate):
    the waterfall of what each step bought and cost.
``serving_runtime`` (version 3)
    the runtime the artifact is served on: the recipe's ``runtime``, else the fastest measured.
``gemm_peaks`` (version 3)
    each runtime's measured matrix-product throughput (GOP/s, fp32 and int8): with FLOPs, the compute floor
    of every latency (:meth:`ReportCard.compute_floors`).
``flags`` (version 3)
    warnings about the result, e.g. a degenerate model predicting one class for nearly every example.

Derived, never stored as state (recomputed on load, written to JSON for other readers):
``ratios`` (:class:`Ratios`) and each claim's ``measured`` / ``measured_gain``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from slimbert.config import build_dataclass, to_plain
from slimbert.environment import environment
from slimbert.errors import SlimbertError
from slimbert.measure.latency import LatencyStats, parse_grid_key
from slimbert.measure.peak import floor_ms

SCHEMA_VERSION = 3  # 3: OpenVINO measurements, serving runtime, stages
DERIVED_KEYS = ("ratios",)  # written for other readers, recomputed from the measurements on load

# runtime ("pytorch" | "onnxruntime") -> shape ("b1s128": batch 1, sequence 128) -> timing
LatencyTable = dict[str, dict[str, LatencyStats]]


@dataclass(frozen=True)
class ParamCounts:
    """Logical weights (a packed or int8 matrix counts the weights it stands for)."""

    total: int
    no_embeddings: int
    nonzero: int


@dataclass(frozen=True)
class OnnxInfo:
    """What the ONNX export did: fused operators, graph transforms applied, how far its logits are
    from the float PyTorch model on a check batch, and its notes."""

    fused_ops: dict[str, int]
    transforms: tuple[str, ...]
    max_abs_logit_diff_vs_float: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenVinoInfo:
    """What the OpenVINO conversion did: the IR's precision ("fp32" or "int8" by NNCF), how far its logits are
    from the float PyTorch model on a check batch, and its notes."""

    precision: str
    max_abs_logit_diff_vs_float: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelMeasurements:
    """One model as measured. Sizes in decimal MB; metrics as fractions (0.9 = 90%), keyed by name
    (prefixed per split for multi-split tasks such as MNLI)."""

    metrics: dict[str, float]  # on PyTorch; {} when not evaluated (shape-only runs on random weights)
    size_mb: float  # the artifact's weights file on disk
    size_mb_no_embeddings: float  # stored weights outside the embedding block
    weights_mb: float  # stored weights, in memory
    params: ParamCounts
    flops: int  # per example at the card's flops_seq_len
    size_mb_onnx: float | None = None  # the ONNX Runtime file, when exported
    onnx: OnnxInfo | None = None
    metrics_onnx: dict[str, float] | None = None  # the same metrics on ONNX Runtime
    latency_ms: LatencyTable = field(default_factory=dict)
    size_mb_openvino: float | None = None  # the OpenVINO IR (.xml + .bin), when converted
    openvino: OpenVinoInfo | None = None
    metrics_openvino: dict[str, float] | None = None  # the same metrics on OpenVINO
    precisions: dict[str, str] = field(default_factory=dict)  # runtime -> "fp32" | "int8": how it computes there
    flops_at: dict[str, int] = field(default_factory=dict)  # sequence length -> FLOPs per example, for timed lengths

    def metrics_on(self, runtime: str) -> dict[str, float] | None:
        """The task metrics measured on ``runtime`` (None when not measured there)."""
        return {"pytorch": self.metrics or None, "onnxruntime": self.metrics_onnx,
                "openvino": self.metrics_openvino}.get(runtime)

    def latency(self, runtime: str, shape: str) -> float | None:
        """Median latency (ms) on ``runtime`` at ``shape`` (e.g. "b1s128"), None when not measured."""
        stats = self.latency_ms.get(runtime, {}).get(shape)
        return stats.median_ms if stats is not None else None

    def metric(self, name: str | None, runtime: str = "pytorch") -> float | None:
        return (self.metrics_on(runtime) or {}).get(name) if name else None


@dataclass(frozen=True)
class TrainingRun:
    """One run of the training loop inside a step: its optimizer steps and training seconds (summed over resumes)."""

    name: str
    steps: int
    train_seconds: float


@dataclass(frozen=True)
class GateOutcome:
    """A step's accuracy gate: the main metric on ``runtime`` against the recipe's input model or the previous
    step (``against``), and what happened (``passed``; ``fallback``: what a fallback changed to pass)."""

    metric: str
    runtime: str
    against: str  # "input" | "previous"
    reference: float
    value: float
    max_drop: float  # points (x100)
    passed: bool
    fallback: str | None = None

    @property
    def drop(self) -> float:
        """Points lost (x100; negative: gained)."""
        return (self.reference - self.value) * 100


@dataclass(frozen=True)
class Stage:
    """The model after one recipe step (the report's waterfall: what each step bought and cost)."""

    step: int  # 1-based
    method: str
    metrics: dict[str, float]  # on PyTorch
    size_mb: float  # stored weights, in memory
    params: int
    flops: int
    latency_ms: float | None = None  # PyTorch, batch 1 x the run's sequence length, a short timing (None: not timed)
    gate: GateOutcome | None = None
    flags: tuple[str, ...] = ()  # e.g. a degenerate result (one class for nearly every example)


@dataclass(frozen=True)
class StepRecord:
    method: str
    family: str
    config: dict[str, Any]  # the step's fields as a recipe spells them (config and step options)
    seconds: float  # wall time of the step in the process that finished it
    training: tuple[TrainingRun, ...] | None = None  # None: recorded before training runs were (version 1)

    @property
    def trained(self) -> bool:
        """Whether the step ran the training loop (version 1 records: whether its config has training settings)."""
        return bool(self.training) if self.training is not None else bool(self.config.get("train"))


@dataclass(frozen=True)
class Claim:
    """A method's statement: ``gain`` is real (``realized``) on ``runtime``, or only simulated there, and how."""

    gain: Literal["size", "speed"]
    runtime: str  # "disk" | "pytorch" | "onnxruntime"
    realized: bool
    detail: str


@dataclass(frozen=True)
class MeasuredClaim:
    """A claim with what the card measured for it: the size ratio (size claims) or the speedup per shape on
    its runtime (speed claims); ``measured_gain`` is None when nothing was measured for it."""

    claim: Claim
    size_ratio: float | None = None
    speedup: dict[str, float | None] | None = None
    measured_gain: bool | None = None


@dataclass(frozen=True)
class Environment:
    date: str
    python: str
    platform: str
    cpu: str
    cpu_count: int | None
    threads: int
    cuda: str | None
    versions: dict[str, str | None]  # package -> version (None: not installed)

    @classmethod
    def current(cls, threads: int | None = None) -> "Environment":
        """This machine and process, now."""
        return build_dataclass(cls, environment(threads), "environment")

    def version(self, package: str) -> str | None:
        return self.versions.get(package)


@dataclass(frozen=True)
class Ratios:
    """Baseline / compressed: > 1 means smaller (sizes, parameters, FLOPs) or faster (``speedup``).

    ``speedup[runtime][shape]`` compares the compressed model with the baseline on the same runtime;
    ``speedup[runtime + "_vs_pytorch_fp32"][shape]`` with the baseline on PyTorch eager, the
    reference every user starts from.
    """

    size: float | None
    size_no_embeddings: float | None
    size_onnx: float | None
    params: float | None
    flops: float | None
    speedup: dict[str, dict[str, float | None]]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def compute_ratios(baseline: ModelMeasurements, compressed: ModelMeasurements) -> Ratios:
    speedup: dict[str, dict[str, float | None]] = {}
    for runtime, by_shape in compressed.latency_ms.items():
        for shape in by_shape:
            value = compressed.latency(runtime, shape)
            speedup.setdefault(runtime, {})[shape] = _ratio(baseline.latency(runtime, shape), value)
            speedup.setdefault(f"{runtime}_vs_pytorch_fp32", {})[shape] = _ratio(baseline.latency("pytorch", shape), value)
    return Ratios(
        size=_ratio(baseline.size_mb, compressed.size_mb),
        size_no_embeddings=_ratio(baseline.size_mb_no_embeddings, compressed.size_mb_no_embeddings),
        size_onnx=_ratio(baseline.size_mb_onnx, compressed.size_mb_onnx),
        params=_ratio(baseline.params.total, compressed.params.total),
        flops=_ratio(baseline.flops, compressed.flops),
        speedup=speedup,
    )


@dataclass(frozen=True)
class ComputeFloor:
    """How far a measured latency is from the hardware: ``ratio`` = latency / floor (1.0: at the peak)."""

    model: str  # "baseline" | "compressed"
    runtime: str
    shape: str
    precision: str
    peak_gops: float
    floor_ms: float
    ratio: float


@dataclass(frozen=True)
class ReportCard:
    """Baseline vs compressed, every gain marked realized or simulated (see the module docstring)."""

    model: str
    task: str
    recipe: dict[str, Any]
    eval_examples: dict[str, int]
    flops_seq_len: int
    baseline: ModelMeasurements
    compressed: ModelMeasurements
    claims: tuple[Claim, ...]
    notes: tuple[str, ...]
    steps: tuple[StepRecord, ...]
    environment: Environment
    start_from: str | None = None
    schema_version: int = SCHEMA_VERSION
    stages: tuple[Stage, ...] = ()  # version 3: the model after each step
    serving_runtime: str | None = None  # version 3: the runtime the artifact is served on
    gemm_peaks: dict[str, dict[str, float]] = field(default_factory=dict)  # runtime -> precision -> GOP/s measured
    flags: tuple[str, ...] = ()  # version 3: warnings about the result (degenerate predictions, ...)

    # -- derived
    @property
    def ratios(self) -> Ratios:
        return compute_ratios(self.baseline, self.compressed)

    @property
    def recipe_name(self) -> str:
        return str(self.recipe.get("name", "recipe"))

    @property
    def main_metric(self) -> str | None:
        """The first metric measured (the task's main one), None for shape-only runs."""
        return next(iter(self.baseline.metrics), None)

    def measured_claims(self) -> list[MeasuredClaim]:
        """Each claim with the measurement that confirms it or not, so a "realized" kernel that measured no
        faster says so: size claims get the on-disk ratio (the ONNX file's for ONNX Runtime), speed claims
        the speedup per shape on their runtime; a gain is measured when the ratio / every speedup is > 1."""
        ratios = self.ratios
        out = []
        for claim in self.claims:
            if claim.gain == "size":
                ratio = ratios.size_onnx if claim.runtime == "onnxruntime" else ratios.size
                out.append(MeasuredClaim(claim, size_ratio=ratio, measured_gain=ratio is not None and ratio > 1.0))
            elif claim.gain == "speed" and claim.runtime in ratios.speedup:
                speedups = ratios.speedup[claim.runtime]
                gain = all(v is not None and v > 1.0 for v in speedups.values())
                out.append(MeasuredClaim(claim, speedup=dict(speedups), measured_gain=gain))
            else:
                out.append(MeasuredClaim(claim))
        return out

    def compute_floors(self) -> list[ComputeFloor]:
        """For each model, runtime and timed shape whose FLOPs are known: the floor (``batch x FLOPs /
        the runtime's measured peak`` in the precision the model computes in there) and latency / floor."""
        out = []
        for side in ("baseline", "compressed"):
            m: ModelMeasurements = getattr(self, side)
            for runtime, by_shape in m.latency_ms.items():
                precision = m.precisions.get(runtime, "fp32")
                peak = self.gemm_peaks.get(runtime, {}).get(precision)
                for shape, stats in by_shape.items():
                    batch, seq = parse_grid_key(shape)
                    flops = m.flops if seq == self.flops_seq_len else m.flops_at.get(str(seq))
                    if peak and flops:
                        floor = floor_ms(batch, flops, peak)
                        out.append(ComputeFloor(side, runtime, shape, precision, peak, floor, stats.median_ms / floor))
        return out

    def training_runs(self) -> list[TrainingRun]:
        return [run for step in self.steps for run in (step.training or ())]

    def missing(self) -> list[str]:
        """What a complete card of an evaluated, exported run lacks (empty when complete). Claims may be empty:
        a step that only trains (``distill``) makes the model neither smaller nor faster by itself."""
        gaps = []
        for side in ("baseline", "compressed"):
            m: ModelMeasurements = getattr(self, side)
            if not m.metrics:
                gaps.append(f"{side}.metrics")
            if m.onnx is None or m.size_mb_onnx is None:
                gaps.append(f"{side}.onnx")
            if m.metrics_onnx is None:
                gaps.append(f"{side}.metrics_onnx")
            if m.params.total <= 0 or m.flops <= 0 or m.size_mb <= 0:
                gaps.append(f"{side}.size/params/flops")
        if not self.steps or len(self.steps) != len(self.recipe.get("steps", ())):
            gaps.append("steps")
        if any(step.training is None for step in self.steps):
            gaps.append("steps.training")
        if not self.eval_examples:
            gaps.append("eval_examples")
        return gaps

    def with_latency(self, baseline: LatencyTable, compressed: LatencyTable, environment: Environment) -> "ReportCard":
        """The same card with new latency measurements (``bench retime``) and the environment they were taken in."""
        return replace(self, baseline=replace(self.baseline, latency_ms=baseline),
                       compressed=replace(self.compressed, latency_ms=compressed), environment=environment)

    # -- JSON
    def to_dict(self) -> dict[str, Any]:
        data = to_plain(self)
        data["ratios"] = to_plain(self.ratios)
        data["claims"] = [_claim_dict(m) for m in self.measured_claims()]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "report card") -> "ReportCard":
        data = {k: v for k, v in data.items() if k not in DERIVED_KEYS}
        data.setdefault("schema_version", 1)
        if data["schema_version"] > SCHEMA_VERSION:
            raise SlimbertError(f"{where}: schema version {data['schema_version']} is newer than this slimbert reads "
                                f"({SCHEMA_VERSION}); upgrade slimbert")
        data["claims"] = [{k: v for k, v in c.items() if k not in ("measured", "measured_gain")} for c in data["claims"]]
        return build_dataclass(cls, data, where)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def _claim_dict(measured: MeasuredClaim) -> dict[str, Any]:
    out = to_plain(measured.claim)
    if measured.measured_gain is not None:
        out["measured"] = {"size_ratio": measured.size_ratio} if measured.speedup is None else {"speedup": measured.speedup}
        out["measured_gain"] = measured.measured_gain
    return out


def load_card(path: str | os.PathLike) -> ReportCard:
    """Read a ``report.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SlimbertError(f"{path}: not a readable report card ({exc})") from None
    return ReportCard.from_dict(data, str(path))
