"""Adaptive models (early exit, token dropping) on ONNX Runtime: one graph per segment, driven by the runner.

One static graph cannot let examples leave the batch or shorten the sequence between layers, so an adaptive
artifact is exported as segments, and :func:`~slimbert.models.adaptive.runner.run_adaptive` (the same loop
that runs the PyTorch model) drives them::

    adaptive/segments.json   {"format", "num_layers", "exit_layers", "scoring_layers", "inputs", "transforms"}
    adaptive/embed.onnx      input_ids (B, T) [, token_type_ids (B, T)] -> hidden (B, T, d)
    adaptive/layer_{i}.onnx  hidden (B, T, d), attention_mask (B, T) int64 -> hidden (B, T, d)
                             [, significance (B, T) for the layers in ``scoring_layers``]
    adaptive/exit_{i}.onnx   hidden (B, T, d), attention_mask (B, T) -> logits (B, C)   (layers with an exit head)
    adaptive/head.onnx       hidden (B, T, d) -> logits (B, C)     (the model's own task head)

``significance`` is the attention each token received (token dropping's score). Only the layers after which the
artifact's retention schedule drops tokens return it (``scoring_layers``): those run attention as separate
ops, because the fused ``Attention`` operator does not give its probabilities out. Every other layer goes
through ONNX Runtime's offline BERT fusions (one ``Attention`` op, skip-LayerNorm, bias-GELU), as the full
model's graph does; a layer whose fusion would change its output by more than the tolerance stays unfused.
The bundle's ONNX transforms (e.g. ``ort-dynamic-int8``) are applied to every segment, so int8 composes
(on a fused layer: ``QAttention``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimbert.errors import SlimbertError
from slimbert.export.onnx import _ON_UNFUSED_GRAPH, _TRANSFORMS, _fuse, float_export_model, onnx_session, sample_batch
from slimbert.models.adaptive.runner import AdaptiveSettings, run_adaptive
from slimbert.models.adaptive.segments import TorchSegments
from slimbert.models.bundle import ModelBundle

ADAPTIVE_DIR = "adaptive"
SEGMENTS_INDEX = "segments.json"
SEGMENTS_FORMAT = "slimbert-segments/2"
_READABLE_FORMATS = ("slimbert-segments/1", SEGMENTS_FORMAT)  # /1: every layer returned its significance


@dataclass
class SegmentsExport:
    path: Path  # the index file
    transforms: list[str] = field(default_factory=list)
    max_abs_diff: float = 0.0  # full-depth logits through the segments vs the float PyTorch model
    notes: list[str] = field(default_factory=list)
    fused_ops: dict[str, int] = field(default_factory=dict)


class _Embed(nn.Module):
    def __init__(self, segments: TorchSegments, names: tuple[str, ...]):
        super().__init__()
        self.segments, self.names = segments, names
        self.model = segments.model

    def forward(self, *tensors):
        return self.segments.embed(dict(zip(self.names, tensors)))


class _Layer(nn.Module):
    def __init__(self, segments: TorchSegments, index: int, scores: bool):
        super().__init__()
        self.segments, self.index, self.scores = segments, index, scores
        self.model = segments.model

    def forward(self, hidden, mask):
        out, significance = self.segments.layer(self.index, hidden, mask, self.scores)
        return (out, significance) if self.scores else out


class _Call(nn.Module):
    def __init__(self, fn, owner: nn.Module):
        super().__init__()
        self.fn, self.owner = fn, owner

    def forward(self, *tensors):
        return self.fn(*tensors)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    # The exporter restores the wrapper's mode afterwards, recursively: a wrapper left in training mode would
    # put the model it wraps back into training mode (dropout on) for everything that follows.
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=17)


def _fuse_layer(path: Path, bundle: ModelBundle, hidden: torch.Tensor, mask: torch.Tensor,
                tolerance: float) -> tuple[Path, dict[str, int]]:
    """ONNX Runtime's BERT fusions on one layer graph, kept only if the layer's output stays within
    ``tolerance`` of the unfused graph's on the sample (hidden (B, T, d), mask (B, T))."""
    fused = path.with_name(f"{path.stem}.fused.onnx")
    stats = _fuse(path, fused, bundle)
    feeds = {"hidden": hidden.numpy(), "attention_mask": mask.numpy().astype(np.int64)}
    before = onnx_session(path).run(None, feeds)[0]
    after = onnx_session(fused).run(None, feeds)[0]
    real = mask.numpy().astype(bool)  # padded positions carry no meaning (and differ between the two)
    if float(np.abs(after[real] - before[real]).max()) > tolerance:
        return path, {}
    return fused, stats


def export_segments(bundle: ModelBundle, directory: str | Path, fusion_tolerance: float = 1e-3) -> SegmentsExport:
    """Write the segments of ``bundle``'s model into ``directory / adaptive`` (replacing what was there)."""
    unsupported = [t["name"] for t in bundle.onnx_transforms if t["name"] in _ON_UNFUSED_GRAPH]
    if unsupported:
        raise SlimbertError(f"adaptive segments cannot carry the ONNX transforms {unsupported}: they need the whole "
                            "model's graph (use dynamic-int8 for int8 with early exit or token dropping)")
    out_dir = Path(directory) / ADAPTIVE_DIR
    model = float_export_model(bundle)
    segments = TorchSegments(model, capture_attention=True)
    names = tuple(n for n in bundle.arch.inputs if n != "attention_mask")
    batch = sample_batch(bundle)
    token_dims = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory(prefix="slimbert-segments-") as tmp:
        tmp = Path(tmp)
        files: dict[str, Path] = {}
        with torch.no_grad():
            hidden = segments.embed(batch)
        _export(_Embed(segments, names), tuple(batch[n] for n in names), tmp / "embed.onnx", list(names), ["hidden"],
                {n: token_dims for n in names} | {"hidden": token_dims})
        files["embed"] = tmp / "embed.onnx"
        mask = batch["attention_mask"]
        scoring = AdaptiveSettings.from_dict(bundle.adaptive).scoring_layers(segments.num_layers)
        fused_ops: dict[str, int] = {}
        for i in range(segments.num_layers):
            path = tmp / f"layer_{i}.onnx"
            outputs = ["hidden_out", "significance"] if i in scoring else ["hidden_out"]
            _export(_Layer(segments, i, i in scoring), (hidden, mask), path, ["hidden", "attention_mask"], outputs,
                    {"hidden": token_dims, "attention_mask": token_dims} | {n: token_dims for n in outputs})
            if i not in scoring:
                path, stats = _fuse_layer(path, bundle, hidden, mask, fusion_tolerance)
                for op, count in stats.items():
                    fused_ops[op] = fused_ops.get(op, 0) + count
            files[f"layer_{i}"] = path
            with torch.no_grad():
                hidden = segments.layer(i, hidden, mask, False)[0]  # the next layer's sample input
        logits_dims = {"hidden": token_dims, "logits": {0: "batch"}}
        for i in segments.exit_layers:
            _export(_Call(partial(segments.exit, i), model), (hidden, mask), tmp / f"exit_{i}.onnx",
                    ["hidden", "attention_mask"], ["logits"], logits_dims | {"attention_mask": token_dims})
            files[f"exit_{i}"] = tmp / f"exit_{i}.onnx"
        _export(_Call(segments.head, model), (hidden,), tmp / "head.onnx", ["hidden"], ["logits"], logits_dims)
        files["head"] = tmp / "head.onnx"
        transforms = []
        for transform in bundle.onnx_transforms:
            params = {k: v for k, v in transform.items() if k != "name"}
            for name, path in files.items():
                nxt = path.with_name(f"{name}.{transform['name']}.onnx")
                _TRANSFORMS[transform["name"]](path, nxt, params)
                files[name] = nxt
            transforms.append(transform["name"])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        for name, path in files.items():
            shutil.copyfile(path, out_dir / f"{name}.onnx")
    index = {"format": SEGMENTS_FORMAT, "num_layers": segments.num_layers, "exit_layers": list(segments.exit_layers),
             "scoring_layers": list(scoring), "inputs": list(names), "transforms": transforms}
    (out_dir / SEGMENTS_INDEX).write_text(json.dumps(index, indent=2))
    fused_attention = fused_ops.get("Attention", 0)
    notes = ["adaptive model exported as ONNX segments (embeddings, each layer, each exit head, the task head) "
             f"driven by slimbert's runner; attention fused in {fused_attention} of {segments.num_layers} layers"]
    if scoring:
        notes.append(f"layers {[i + 1 for i in scoring]} return the attention each token received (token dropping "
                     "scores tokens after them), so their attention runs as separate ops")
    result = SegmentsExport(path=out_dir / SEGMENTS_INDEX, transforms=transforms, notes=notes, fused_ops=fused_ops)
    with torch.no_grad():
        reference = model(**batch).logits.numpy()
    full_depth = run_adaptive(OnnxSegments(out_dir), dict(batch), AdaptiveSettings()).logits.numpy()
    result.max_abs_diff = float(np.abs(full_depth - reference).max())
    return result


class OnnxSegments:
    """The segment interface of :mod:`slimbert.models.adaptive.segments`, on ONNX Runtime sessions."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        directory = Path(directory)
        index_path = directory / SEGMENTS_INDEX
        if not index_path.is_file():
            raise SlimbertError(f"{directory} has no {SEGMENTS_INDEX}: not an adaptive ONNX export")
        index: dict[str, Any] = json.loads(index_path.read_text())
        if index.get("format") not in _READABLE_FORMATS:
            raise SlimbertError(f"{index_path}: unsupported format {index.get('format')!r} "
                                f"(expected {SEGMENTS_FORMAT})")
        self.num_layers = int(index["num_layers"])
        self.exit_layers = tuple(index["exit_layers"])
        self.scoring_layers = tuple(index.get("scoring_layers", range(self.num_layers)))
        self.inputs = tuple(index["inputs"])

        def session(name: str):
            # No spinning: one segment's idle worker threads would busy-wait while the next segment runs, and
            # with a session per layer they starve each other (measured: 73 ms vs 13 ms per sentence).
            return onnx_session(directory / f"{name}.onnx", threads, spinning=False)

        self._embed = session("embed")
        self._layers = [session(f"layer_{i}") for i in range(self.num_layers)]
        self._exits = {i: session(f"exit_{i}") for i in self.exit_layers}
        self._head = session("head")

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = {n: np.asarray(inputs[n], dtype=np.int64) for n in self.inputs}
        return torch.from_numpy(self._embed.run(None, feeds)[0])

    def layer(self, i: int, hidden: torch.Tensor, mask: torch.Tensor,
              want_significance: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if want_significance and i not in self.scoring_layers:
            raise SlimbertError(f"this ONNX export scores tokens only after layers "
                                f"{[j + 1 for j in self.scoring_layers] or 'none'}, and the retention schedule asks "
                                f"for layer {i + 1}: compress with that schedule (its export then returns the scores)")
        outputs = self._layers[i].run(None, {"hidden": np.ascontiguousarray(hidden.numpy()),
                                             "attention_mask": np.asarray(mask, dtype=np.int64)})
        return torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1]) if want_significance else None

    def exit(self, i: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feeds = {"hidden": np.ascontiguousarray(hidden.numpy()), "attention_mask": np.asarray(mask, dtype=np.int64)}
        return torch.from_numpy(self._exits[i].run(None, feeds)[0])

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._head.run(None, {"hidden": np.ascontiguousarray(hidden.numpy())})[0])
