"""ONNX export for the fast runtime (ONNX Runtime).

Steps, each checked against PyTorch on a padded sample batch:

1. Export the *float equivalent* of the model (compressed modules dequantized, see
   :func:`~slimbert.models.module_kinds.float_equivalent`) with the TorchScript exporter from
   eager attention: ONNX Runtime's transformer optimizer only fuses attention, embedding and
   LayerNorm on that graph (measured 5-28% slower without fusion, shared/docs/RUNTIMES.md).
2. Fuse with ``onnxruntime.transformers.optimizer`` (skipped, with a note, if outputs drift).
3. Apply the bundle's registered ONNX transforms in order (e.g. ``ort-dynamic-int8``), which is
   how a method states what its model should become on ONNX Runtime. A transform registered
   with ``on_unfused_graph=True`` (static int8 QDQ) needs the graph before step 2, so the offline
   fusions are skipped for such bundles (ONNX Runtime still fuses LayerNorm/GELU at load time).
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from slimbert.data.batching import predict_batches
from slimbert.export.head_counts import pin_head_counts
from slimbert.models.bundle import ModelBundle
from slimbert.models.module_kinds import float_equivalent
from slimbert.models.structure import config_value, layer_views

OnnxTransform = Callable[[Path, Path, dict[str, Any]], None]
_TRANSFORMS: dict[str, OnnxTransform] = {}
_ON_UNFUSED_GRAPH: set[str] = set()
_INT8: set[str] = set()


def computes_in_int8(bundle: ModelBundle) -> bool:
    """Whether the bundle's ONNX transforms make its graph compute in int8 (its fast-runtime form)."""
    return any(t["name"] in _INT8 for t in bundle.onnx_transforms)


@contextmanager
def quiet_root_logging(level: int = logging.ERROR):
    """Raise the root logger's level for a block (ORT's quantizer warns on the root logger)."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(previous)


def register_onnx_transform(name: str, *, on_unfused_graph: bool = False,
                            int8: bool = False) -> Callable[[OnnxTransform], OnnxTransform]:
    """Register ``fn(src_path, dst_path, params)``, referenced from bundles as ``{"name": name, **params}``.

    ``on_unfused_graph``: the transform needs the plain exported graph (no ORT contrib-op fusions).
    ``int8``: the transform makes the graph compute in int8 (other runtimes quantize their graph too).
    """

    def decorator(fn: OnnxTransform) -> OnnxTransform:
        _TRANSFORMS[name] = fn
        if on_unfused_graph:
            _ON_UNFUSED_GRAPH.add(name)
        if int8:
            _INT8.add(name)
        return fn

    return decorator


@dataclass
class OnnxExport:
    path: Path
    fused_ops: dict[str, int] = field(default_factory=dict)
    transforms: list[str] = field(default_factory=list)
    max_abs_diff: float = 0.0  # final ONNX logits vs the float PyTorch model on the check batch
    notes: list[str] = field(default_factory=list)


class _LogitsOnly(nn.Module):
    """Forward with explicit tensor arguments returning only logits (B, C), for a clean graph."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, tensors))).logits


def sample_batch(bundle: ModelBundle, batch: int = 2, seq: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids (B, T) with the last row padded, to check exported graphs against PyTorch."""
    gen = torch.Generator().manual_seed(seed)
    vocab = bundle.model.config.vocab_size
    ids = torch.randint(5, vocab, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq // 2:] = 0
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(batch, seq, dtype=torch.long)}
    return {k: out[k] for k in bundle.arch.inputs}


def float_export_model(bundle: ModelBundle) -> nn.Module:
    """A float, eager-attention copy of the bundle's model for export."""
    model = float_equivalent(copy.deepcopy(bundle.model)).float().cpu().eval()  # a model trained on a GPU too
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return model


def onnx_session(path: str | Path, threads: int | None = None, spinning: bool = True):
    """An ONNX Runtime CPU session. ``spinning=False`` stops idle worker threads from busy-waiting,
    which would steal cores from whatever runs next (used when timing several sessions in turn)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, batch: dict[str, torch.Tensor]) -> np.ndarray:
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k in names}
    return session.run(None, feeds)[0]


def _max_diff(path: Path, batch: dict[str, torch.Tensor], reference: np.ndarray) -> float:
    return float(np.abs(onnx_logits(onnx_session(path), batch) - reference).max())


def export_float_graph(bundle: ModelBundle, path: Path, opset: int = 17) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """The plain float graph of the bundle's model (compressed modules as their float equivalents, eager
    attention, standard ONNX ops only: what every runtime reads). Returns the check batch and the PyTorch
    float model's logits on it (B, C), against which exported graphs are compared."""
    names = bundle.arch.inputs
    model = float_export_model(bundle)
    batch = sample_batch(bundle)
    with torch.no_grad():
        reference = model(**batch).logits.numpy()
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow we do not use
        torch.onnx.export(_LogitsOnly(model, names), tuple(batch[n] for n in names), str(path), dynamo=False,
                          input_names=list(names), output_names=["logits"], dynamic_axes=dynamic, opset_version=opset)
    return batch, reference


def export_onnx(bundle: ModelBundle, path: str | Path, *, optimize: bool = True, opset: int = 17,
                fusion_tolerance: float = 1e-3) -> OnnxExport:
    """Export ``bundle`` to ``path`` (float graph -> fused -> the bundle's transforms)."""
    path = Path(path)
    result = OnnxExport(path=path)
    with tempfile.TemporaryDirectory(prefix="slimbert-onnx-") as tmp:
        raw = Path(tmp) / "float.onnx"
        batch, reference = export_float_graph(bundle, raw, opset)
        current = raw
        unfused = [t["name"] for t in bundle.onnx_transforms if t["name"] in _ON_UNFUSED_GRAPH]
        if unfused and optimize:
            result.notes.append(f"offline ONNX Runtime fusions skipped: {', '.join(unfused)} works on the unfused "
                                "graph (the session still fuses LayerNorm/GELU when it loads)")
        if optimize and bundle.arch.is_transformer and not unfused:
            fused = Path(tmp) / "fused.onnx"
            stats = _fuse(raw, fused, bundle)
            diff = _max_diff(fused, batch, reference)
            if diff <= fusion_tolerance:
                current, result.fused_ops = fused, stats
                layers = len(layer_views(bundle.model))
                if stats.get("Attention", 0) < layers:
                    result.notes.append(
                        f"attention fused in {stats.get('Attention', 0)} of {layers} layers: ONNX Runtime fuses only "
                        "plain q/k/v and output projections (a layer where one of them is factored or otherwise "
                        "rewritten runs attention as separate MatMul/Softmax ops)")
            else:
                result.notes.append(f"ONNX Runtime fusion changed logits by {diff:.2e}; kept the unfused graph")
        for i, transform in enumerate(bundle.onnx_transforms):
            params = {k: v for k, v in transform.items() if k != "name"}
            nxt = Path(tmp) / f"transform{i}.onnx"
            _TRANSFORMS[transform["name"]](current, nxt, params)
            current = nxt
            result.transforms.append(transform["name"])
        result.max_abs_diff = _max_diff(current, batch, reference)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(current, path)
    return result


def _fuse(src: Path, dst: Path, bundle: ModelBundle) -> dict[str, int]:
    """ONNX Runtime's BERT fusions (attention, embedding+LayerNorm, skip-LayerNorm, bias-GELU)."""
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    heads = config_value(bundle.model, "heads")
    hidden = config_value(bundle.model, "hidden")
    pruned_heads = any(v.num_heads != heads for v in layer_views(bundle.model))
    if pruned_heads:
        # Layers have their own head counts: write them into the graph, then let the optimizer read
        # them per layer (num_heads=0 and hidden_size=0 mean "detect").
        pinned = src.with_name("pinned-heads.onnx")
        pin_head_counts(src, pinned)
        src, heads, hidden = pinned, 0, 0
        # It then warns that a layer's attention width differs from the model width, which is the point.
        logging.getLogger("fusion_attention").setLevel(logging.ERROR)
    optimized = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1)
    optimized.save_model_to_file(str(dst))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def predict_onnx(session, dataset, batch_size: int = 128, pad_token_id: int = 0) -> np.ndarray:
    """Logits (N, C) of an ONNX Runtime session over an encoded dataset, in dataset order."""
    return predict_batches(dataset, batch_size, pad_token_id, lambda batch: onnx_logits(session, batch))
