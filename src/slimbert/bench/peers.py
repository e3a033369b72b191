"""``slimbert bench peers``: slimbert's models against what the runtimes' own one-line tools give, side by side.

On one teacher and one dev set, in one process, every path is measured the same way: accuracy on the dev
set, size on disk, and latency at batch 1 and 32, both padded to 128 tokens and at the dev set's natural
lengths (dynamic padding), runtimes timed in separate interleaved blocks (shared/docs/RUNTIMES.md); at the
padded shapes each path's turn is 3 consecutive calls, the first not recorded, so that every model is timed
warm, as when it is served alone. The peer paths, each given its best settings:

* PyTorch fp32 eager;
* ONNX Runtime fp32 (the exported graph with its transformer fusions);
* ONNX Runtime's own ``quantize_dynamic`` on that fused graph (int8 weights, per-channel);
* OpenVINO fp32 (with an explicit f32 precision hint: its default on this CPU is bf16);
* OpenVINO + NNCF int8 post-training quantization, calibrated on 300 training examples, with OpenVINO's
  default precision hint (bf16 for the ops NNCF left in float, on a CPU with bf16) and with f32;
* torchao int8 dynamic quantization compiled with torch.compile, when torchao is installed (the ``torchao`` extra:
  ``pip install -e ".[torchao]"``; make does not install it) and runs on this CPU;

and each slimbert artifact given with ``--artifact`` on each runtime it has (an int8 IR with both hints too).
A path that cannot be measured is listed with the reason.

Each path also gets its compute floor at the padded shapes (:mod:`slimbert.measure.peak`): batch x FLOPs per
example / the runtime's own measured matrix-product peak in the precision the path computes in, and the
measured latency's ratio to it (how far each path is from the hardware).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from slimbert.data.batching import length_sorted_batches
from slimbert.data.encoding import EncodedDataset, PadCollator
from slimbert.data.tasks import get_task
from slimbert.environment import environment
from slimbert.export.onnx import computes_in_int8, export_onnx, onnx_logits, onnx_session, quiet_root_logging
from slimbert.export.openvino import (
    OPENVINO_DIR,
    OPENVINO_XML,
    export_openvino,
    ir_precision,
    nncf_int8_ir,
    openvino_hint,
    openvino_logits,
    openvino_model,
)
from slimbert.export.runtimes import available_runtimes, open_session
from slimbert.measure.flops import flops_per_example
from slimbert.measure.latency import grid_key, parse_grid_key, random_inputs, set_threads, time_interleaved
from slimbert.measure.peak import floor_ms, gemm_peaks
from slimbert.measure.size import MB, file_size
from slimbert.models.artifact import ONNX_NAME, WEIGHTS_NAME, load_compressed
from slimbert.models.loading import load_model, resolve_model_source
from slimbert.models.module_kinds import computes_in_int8 as module_computes_in_int8
from slimbert.models.shape import shape_of
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

PADDED_BATCHES = (1, 32)  # padded to 128 tokens (or the model's positions, if fewer)
NATURAL_BATCHES = (1, 32)
WARM_REPEATS = 3  # consecutive calls per path per round at the padded shapes (measure.latency.time_interleaved)


@dataclass
class PeerPath:
    """One way to run the task: who made it, on which runtime, its accuracy, size and latencies."""

    name: str
    kind: str  # "peer" | "slimbert"
    runtime: str
    description: str
    metric: float | None = None
    size_mb: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # "b1s128" / "b32s128" padded; "b1nat" / "b32nat"
    missing: str | None = None  # why the path could not be measured
    flops: int | None = None  # per example at the padded length (the model's, whatever runs it)
    precision: str = "fp32"  # "fp32" | "int8": what its matrix products run in (picks the peak of its floor)
    compute_floor: dict[str, dict[str, float]] = field(default_factory=dict)  # shape -> floor_ms, ratio
    run: Callable[[dict[str, np.ndarray]], Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "run"}


def _ort_quantize_dynamic(fused: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_root_logging():
        quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


TORCHAO_DESCRIPTION = "torchao int8 dynamic activations and weights, torch.compile (inductor)"


def torchao_int8(model):
    """torchao's int8 dynamic-activation int8-weight quantization of a copy of ``model`` (raises if unavailable)."""
    import copy

    with quiet_root_logging():  # torchao warns at import about its CUDA-only kernel libraries
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_  # type: ignore[import-not-found]

    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    return quantized


def peer_paths(teacher_spec: str, data: TaskDataset, work: Path, threads: int, log, seq: int = 128) -> list[PeerPath]:
    """The teacher on every peer path (exported into ``work``)."""
    import torch

    teacher = load_model(teacher_spec, data.task)
    names = teacher.arch.inputs
    paths: list[PeerPath] = []

    def torch_run(model):
        def run(feeds):
            with torch.inference_mode():
                return model(**{k: torch.as_tensor(v) for k, v in feeds.items()}).logits.numpy()
        return run

    source = Path(resolve_model_source(teacher_spec))
    weights = source / WEIGHTS_NAME if (source / WEIGHTS_NAME).is_file() else next(source.glob("*.safetensors"), None)
    paths.append(PeerPath("pytorch-fp32", "peer", "pytorch", "PyTorch fp32 eager",
                          size_mb=file_size(weights) / MB if weights else None, run=torch_run(teacher.model.eval())))
    log("peers: exporting the teacher for ONNX Runtime")
    fused = export_onnx(teacher, work / "fp32.onnx")
    ort_fp32 = onnx_session(fused.path, threads, spinning=False)
    paths.append(PeerPath("ort-fp32", "peer", "onnxruntime", "ONNX Runtime fp32, transformer fusions",
                          size_mb=file_size(fused.path) / MB, run=lambda feeds, s=ort_fp32: onnx_logits(s, feeds)))
    _ort_quantize_dynamic(fused.path, work / "ort-qdyn.onnx")
    ort_q = onnx_session(work / "ort-qdyn.onnx", threads, spinning=False)
    paths.append(PeerPath("ort-quantize-dynamic", "peer", "onnxruntime",
                          "ONNX Runtime quantize_dynamic (int8 per-channel) on the fused graph", precision="int8",
                          size_mb=file_size(work / "ort-qdyn.onnx") / MB, run=lambda f, s=ort_q: onnx_logits(s, f)))
    log("peers: converting the teacher to OpenVINO (fp32, and int8 with NNCF)")
    ov_fp32 = export_openvino(teacher, work / "ov-fp32")
    compiled = openvino_model(ov_fp32.path, threads, hint="f32")
    paths.append(PeerPath("openvino-fp32", "peer", "openvino", "OpenVINO fp32 (explicit f32 precision hint)",
                          size_mb=_ir_size(ov_fp32.path), run=lambda f, c=compiled: openvino_logits(c, f)))
    int8 = nncf_int8_ir(ov_fp32.path, work / "ov-int8.xml", data.train_set(teacher.tokenizer),
                        teacher.tokenizer.pad_token_id or 0, names)
    for suffix, hint, says in (("", None, "default hint (bf16 for the float ops on a CPU with bf16)"),
                               ("-f32", "f32", "f32 hint for the ops NNCF left in float")):
        compiled_q = openvino_model(int8, threads, hint=hint)
        paths.append(PeerPath(f"openvino-nncf-int8{suffix}", "peer", "openvino",
                              f"OpenVINO + NNCF int8 post-training quantization (300 training examples), {says}",
                              precision="int8", size_mb=_ir_size(int8),
                              run=lambda f, c=compiled_q: openvino_logits(c, f)))
    try:
        torchao_model = torchao_int8(teacher.model.eval())
        # torch.compile is torchao's own pairing: eager, its int8 tensors run about as fast as fp32 on this CPU
        # (benchmarks/probes/torchao_compile.py); inductor fuses them (20-25 s per new shape on two cores).
        compiled_ao = torch.compile(torchao_model)
        with torch.inference_mode():  # compile now: a machine without a C++ compiler fails here, not mid-run
            compiled_ao(**random_inputs(teacher.model.config.vocab_size, names, 1, seq))
        paths.append(PeerPath("torchao-int8-dynamic", "peer", "pytorch", TORCHAO_DESCRIPTION, precision="int8",
                              size_mb=_saved_size_mb(torchao_model), run=torch_run(compiled_ao)))
    except ImportError:
        paths.append(PeerPath("torchao-int8-dynamic", "peer", "pytorch", TORCHAO_DESCRIPTION, precision="int8",
                              missing='torchao is not installed (optional: pip install -e ".[torchao]")'))
    except Exception as exc:  # installed, but no kernel or no compiler for this machine
        paths.append(PeerPath("torchao-int8-dynamic", "peer", "pytorch", TORCHAO_DESCRIPTION,
                              precision="int8", missing=f"{type(exc).__name__}: {exc}".splitlines()[0][:200]))
    flops = flops_per_example(teacher.model, seq)
    for p in paths:  # every peer runs the teacher's products (in the precision its tool left them in)
        p.flops = flops
    return paths


def _saved_size_mb(model) -> float:
    """Bytes of ``torch.save(model.state_dict())``: what a user of that tool stores (int8 weights + their scales)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / MB


def _ir_size(xml: Path) -> float:
    return (file_size(xml) + file_size(Path(xml).with_suffix(".bin"))) / MB


def artifact_paths(directory: Path, data: TaskDataset, threads: int, seq: int = 128) -> list[PeerPath]:
    """A slimbert artifact on each runtime it has."""
    bundle = load_compressed(directory)
    flops = flops_per_example(bundle.model, seq)
    precision = {"pytorch": "int8" if module_computes_in_int8(bundle.model) else "fp32",
                 "onnxruntime": "int8" if computes_in_int8(bundle) else "fp32",
                 "openvino": ir_precision(directory / OPENVINO_DIR / OPENVINO_XML)}
    out = []
    for runtime in available_runtimes(directory):
        # Not spinning, as the peers' own ONNX Runtime sessions: an idle spinning pool slows the next path timed.
        session = open_session(bundle, directory, runtime, threads, spinning=False)
        size = (file_size(directory / WEIGHTS_NAME) / MB if runtime == "pytorch" else
                file_size(directory / ONNX_NAME) / MB if runtime == "onnxruntime" else
                _ir_size(directory / OPENVINO_DIR / OPENVINO_XML))
        out.append(PeerPath(f"{directory.name}@{runtime}", "slimbert", runtime, f"slimbert artifact {directory}",
                            size_mb=size, run=session.run, flops=flops, precision=precision[runtime]))
        if runtime == "openvino" and precision[runtime] == "int8":
            out.append(_other_hint_path(directory, out[-1], threads))
    return out


def _other_hint_path(directory: Path, recorded: PeerPath, threads: int) -> PeerPath:
    """An int8 IR compiled with the other precision hint than the one its artifact records: OpenVINO runs the ops
    NNCF left in float (softmax, layer norms, GELU) in bf16 by default on a CPU with bf16, which is faster and
    rounds (benchmarks/probes/openvino_int8_hint.py), so both are shown side by side."""
    xml = directory / OPENVINO_DIR / OPENVINO_XML
    hint = "f32" if openvino_hint(xml) != "f32" else "bf16"
    compiled = openvino_model(xml, threads, hint=hint)
    return replace(recorded, name=f"{recorded.name}-{hint}", description=f"{recorded.description}, {hint} hint",
                   latency_ms={}, compute_floor={},  # its own (replace would share the recorded path's dicts)
                   run=lambda f, c=compiled: openvino_logits(c, f))


def fill_compute_floors(paths: list[PeerPath], peaks: dict[str, dict[str, float]]) -> None:
    """Each timed path's floor at the padded shapes ("b{B}s{S}"): ``B x FLOPs / peak`` and latency / floor."""
    for p in paths:
        peak = peaks.get(p.runtime, {}).get(p.precision)
        if not (peak and p.flops):
            continue
        for shape, ms in p.latency_ms.items():
            padded = parse_grid_key(shape)
            if padded is None:
                continue  # natural lengths: no single FLOPs count
            floor = floor_ms(padded[0], p.flops, peak)
            p.compute_floor[shape] = {"floor_ms": floor, "ratio": ms / floor}


def _accuracy(path: PeerPath, data: TaskDataset, tokenizer) -> float:
    metric = data.task.main_metric
    pad = tokenizer.pad_token_id or 0
    from slimbert.data.batching import predict_batches

    evaluation = data.evaluation(lambda ds: predict_batches(ds, 32, pad, path.run), tokenizer)
    return evaluation.metrics[metric]


def natural_batches(dataset: EncodedDataset, batch: int, pad_token_id: int, names: tuple[str, ...],
                    examples: int) -> list[dict[str, np.ndarray]]:
    """Dev sentences at their own lengths: batches of ``batch`` neighbours in length order, padded per batch."""
    subset = dataset.subset(examples)
    collate = PadCollator(pad_token_id)
    out = []
    for idx in length_sorted_batches(subset, batch):
        padded = collate([subset[i] for i in idx])
        out.append({k: v.numpy() for k, v in padded.items() if k in names})
    return out


def time_paths(paths: list[PeerPath], vocab: int, names: tuple[str, ...], natural: dict[int, list], threads: int,
               budget_s: float, log, seq: int = 128) -> None:
    """Fill each path's ``latency_ms``; one runtime at a time, its paths interleaved."""
    set_threads(threads)
    live = [p for p in paths if p.run is not None and p.missing is None]
    for runtime in ("pytorch", "onnxruntime", "openvino"):
        block = [p for p in live if p.runtime == runtime]
        if not block:
            continue
        for batch in PADDED_BATCHES:
            feeds = {k: v.numpy() for k, v in random_inputs(vocab, names, batch, seq).items()}
            log(f"peers: timing {runtime} at batch {batch} x seq {seq} ({len(block)} paths)")
            # Warm turns (3 calls, the first not recorded): each model timed as when served alone, not with its
            # weights evicted by the previous path's (a small model lost ~1/3 of its speed at b1 to that).
            stats = time_interleaved({p.name: (lambda p=p: p.run(feeds)) for p in block}, budget_s=budget_s,
                                     repeats=WARM_REPEATS)
            for p in block:
                p.latency_ms[grid_key(batch, seq)] = stats[p.name].median_ms
        for batch, batches in natural.items():
            log(f"peers: timing {runtime} at batch {batch}, natural lengths ({len(block)} paths)")

            def sweep(p):
                def run():
                    for feeds in batches:
                        p.run(feeds)
                return run

            stats = time_interleaved({p.name: sweep(p) for p in block}, budget_s=budget_s, min_runs=3, warmup=1)
            examples = sum(len(next(iter(f.values()))) for f in batches)
            for p in block:  # per batch, as for the padded shapes
                p.latency_ms[f"b{batch}nat"] = stats[p.name].median_ms * batch / examples


def run_peers(teacher: str, task: str, artifacts: list[Path], *, data_dir: str | None = None, threads: int = 2,
              budget_s: float = 10.0, natural_examples: int = 256, log=print) -> dict[str, Any]:
    """Measure every peer path and every artifact; return the record (``rows``: one per path)."""
    data = TaskDataset(get_task(task), RunSettings(data_dir=data_dir))
    teacher_bundle = load_model(teacher, data.task)
    data.settings, _ = data.settings.for_model(shape_of(teacher_bundle.model).max_positions, teacher)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slimbert-peers-") as tmp:
        seq = data.settings.seq_len
        paths = peer_paths(teacher, data, Path(tmp), threads, log, seq)
        for artifact in artifacts:
            paths += artifact_paths(Path(artifact), data, threads, seq)
        tokenizer = teacher_bundle.tokenizer
        for p in paths:
            if p.missing is None:
                log(f"peers: accuracy of {p.name}")
                p.metric = _accuracy(p, data, tokenizer)
        names = teacher_bundle.arch.inputs
        dev = next(iter(data.eval_sets(tokenizer).values()))
        natural = {b: natural_batches(dev, b, tokenizer.pad_token_id or 0, names, natural_examples)
                   for b in NATURAL_BATCHES}
        time_paths(paths, teacher_bundle.model.config.vocab_size, names, natural, threads, budget_s, log, seq=seq)
        log("peers: measuring each runtime's matrix-product peak (the compute floor)")
        peaks = gemm_peaks(threads)
        fill_compute_floors(paths, peaks)
    reference = next(p for p in paths if p.name == "pytorch-fp32")
    rows = []
    for p in paths:
        row = p.to_dict()
        row["speedup_vs_pytorch_fp32"] = {k: reference.latency_ms[k] / v for k, v in p.latency_ms.items()
                                          if k in reference.latency_ms and v}
        rows.append(row)
    return {"teacher": str(teacher), "task": data.task.name, "metric": data.task.main_metric,
            "padded_shapes": [grid_key(b, data.settings.seq_len) for b in PADDED_BATCHES],
            "artifacts": [str(a) for a in artifacts], "threads": threads, "budget_s": budget_s,
            "natural_examples": natural_examples, "seconds": round(time.perf_counter() - started, 1),
            "gemm_peaks": peaks,
            "rows": rows, "environment": environment(threads)}


def peers_table(record: dict[str, Any]) -> str:
    """Markdown: accuracy, size, latency and speedup vs PyTorch fp32 of every path."""
    metric = record["metric"]
    teacher = next(r for r in record["rows"] if r["name"] == "pytorch-fp32")
    b1, b32 = record["padded_shapes"]
    lines = [f"| path | runtime | {metric} (vs teacher) | size MB | {b1} ms | {b32} ms | b1 natural ms | "
             f"b32 natural ms | speedup {b1} / {b32} vs PyTorch fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        if r["missing"]:
            lines.append(f"| {r['name']} | {r['runtime']} | not measured: {r['missing']} | | | | | | |")
            continue
        lat, sp = r["latency_ms"], r["speedup_vs_pytorch_fp32"]
        delta = (r["metric"] - teacher["metric"]) * 100
        cells = [f"{lat[k]:.2f}" if k in lat else "n/a" for k in (b1, b32, "b1nat", "b32nat")]
        lines.append(f"| {r['name']} | {r['runtime']} | {r['metric'] * 100:.2f} ({delta:+.2f}) | "
                     f"{r['size_mb']:.1f} | " + " | ".join(cells) +
                     f" | {sp.get(b1, 0):.2f}x / {sp.get(b32, 0):.2f}x |")
    return "\n".join(lines)


def floors_table(record: dict[str, Any]) -> str:
    """Markdown: each path's compute floor at the padded shapes and how far its latency is from it."""
    peaks = record.get("gemm_peaks") or {}
    b1, b32 = record["padded_shapes"]
    lines = [f"| path | runtime | precision | GFLOPs / example | peak GOP/s | floor {b1} ms | latency / floor | "
             f"floor {b32} ms | latency / floor |", "|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        floors = r.get("compute_floor") or {}
        if r["missing"] or not floors:
            continue
        peak = peaks.get(r["runtime"], {}).get(r["precision"], 0.0)
        cells = [f"{floors[k]['floor_ms']:.2f} | {floors[k]['ratio']:.1f}x" if k in floors else "n/a | n/a"
                 for k in (b1, b32)]
        lines.append(f"| {r['name']} | {r['runtime']} | {r['precision']} | {r['flops'] / 1e9:.3f} | {peak:.0f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def peers_tables(record: dict[str, Any]) -> str:
    """Markdown: the side-by-side table, then the compute floors (records before the floors have only the first)."""
    if not any(r.get("compute_floor") for r in record["rows"]):
        return peers_table(record)
    floors = floors_table(record)
    return (peers_table(record) + "\n\nHow far from the hardware: floor = batch x FLOPs / the runtime's measured "
            "matrix-product peak in the path's precision (1.0x would be every cycle in matrix products at full "
            "speed).\n\n" + floors)


def plot_peers(record: dict[str, Any], path: Path) -> Path:
    """Accuracy vs latency (b1 and b32, padded 128), the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    rows = [r for r in record["rows"] if not r["missing"]]
    # Points are numbered and the names listed beside the plots: with several artifacts on four runtimes each,
    # names written next to the points overlap.
    index = {r["name"]: i for i, r in enumerate(rows, start=1)}
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.2))
    for ax, shape in zip(axes, record["padded_shapes"]):
        points = [(r["latency_ms"][shape], r["metric"] * 100, r) for r in rows if shape in r["latency_ms"]]
        for x, y, r in points:
            ax.scatter(x, y, marker="o" if r["kind"] == "peer" else "*", s=60 if r["kind"] == "peer" else 140,
                       color="tab:blue" if r["kind"] == "peer" else "tab:red")
            ax.annotate(str(index[r["name"]]), (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
        front = pareto_front([(x, y) for x, y, _ in points])
        if front:
            ax.plot(*zip(*front), color="grey", linestyle="--", linewidth=1, label="Pareto front")
        ax.set_xscale("log")
        # Ticks at 1-2-5 steps as plain numbers: log axes label their minor ticks 3x10^0, 4x10^0 ... in a span
        # of about one decade, and those labels overlap.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"latency ms ({shape}, padded, log scale)")
        ax.set_ylabel(f"dev {record['metric']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{record['task']}: slimbert (stars) vs the runtimes' own tools (dots), {record['threads']} threads")
    fig.tight_layout(rect=(0, 0, 0.78, 1))
    fig.text(0.79, 0.95, "\n".join(f"{i}  {name}" for name, i in index.items()), fontsize=7, va="top",
             family="monospace")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both lower latency (x) and higher accuracy (y), by increasing x."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def save_record(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)

