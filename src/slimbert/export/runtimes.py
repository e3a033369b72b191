"""One way to run an artifact on any of its runtimes: PyTorch, ONNX Runtime or OpenVINO.

A :class:`Session` takes a batch of padded inputs ((B, T) tensors or arrays) and returns logits (B, C)
as numpy; ``predict`` runs a whole encoded dataset. Evaluation, serving (``slimbert predict``,
``slimbert.pipeline``) and ``slimbert eval --runtime`` all go through :func:`open_session`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from slimbert.data.batching import predict_batches
from slimbert.data.encoding import EncodedDataset
from slimbert.errors import SlimbertError
from slimbert.export.onnx import onnx_logits, onnx_session
from slimbert.export.onnx_segments import ADAPTIVE_DIR, SEGMENTS_INDEX, OnnxSegments
from slimbert.export.openvino import OPENVINO_DIR, OPENVINO_XML, openvino_logits, openvino_model
from slimbert.models.adaptive.runner import AdaptiveSettings, run_adaptive
from slimbert.models.adaptive.segments import TorchSegments
from slimbert.models.artifact import ONNX_NAME
from slimbert.models.bundle import ModelBundle

RUNTIMES = ("pytorch", "onnxruntime", "openvino")


@dataclass
class Session:
    """A model ready to run on one runtime."""

    runtime: str
    run: Callable[[dict[str, Any]], np.ndarray]  # batch -> logits (B, C)

    def logits(self, batch: dict[str, Any]) -> np.ndarray:
        return self.run(batch)

    def predict(self, dataset: EncodedDataset, batch_size: int = 128, pad_token_id: int = 0) -> np.ndarray:
        """Logits (N, C) over ``dataset``, in dataset order (length-sorted batches, dynamic padding)."""
        return predict_batches(dataset, batch_size, pad_token_id, self.run)


def runtime_file(directory: Path, runtime: str) -> Path | None:
    """The file an artifact directory holds for ``runtime`` (None for PyTorch, which needs none); an adaptive
    artifact (early exit, token dropping) runs on ONNX Runtime through its segments' index."""
    if runtime == "onnxruntime":
        segments = directory / ADAPTIVE_DIR / SEGMENTS_INDEX
        return segments if segments.is_file() else directory / ONNX_NAME
    if runtime == "openvino":
        return directory / OPENVINO_DIR / OPENVINO_XML
    return None


def available_runtimes(directory: Path) -> list[str]:
    """The runtimes an artifact directory can run on."""
    return [r for r in RUNTIMES if runtime_file(Path(directory), r) is None or runtime_file(Path(directory), r).is_file()]


def open_session(bundle: ModelBundle, directory: str | Path | None, runtime: str, threads: int | None = None,
                 spinning: bool = True) -> Session:
    """``bundle`` (its PyTorch model) or its artifact ``directory``'s export, ready to run on ``runtime``.
    ``spinning=False`` stops ONNX Runtime's idle workers from busy-waiting (for timing several sessions in turn:
    a spinning session steals the cores of whichever session runs after it)."""
    if runtime not in RUNTIMES:
        raise SlimbertError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    adaptive = AdaptiveSettings.from_dict(bundle.adaptive)
    if adaptive.active and runtime == "openvino":
        raise SlimbertError("an adaptive model (early exit / token dropping) runs on pytorch or onnxruntime; its "
                            "OpenVINO conversion is not supported (the runner drives ONNX Runtime segments)")
    if adaptive.active and runtime == "pytorch":
        segments = TorchSegments(bundle.model.eval(), capture_attention=bool(adaptive.retention))
        return Session("pytorch", _adaptive_run(segments, adaptive, bundle.arch.inputs))
    if runtime == "pytorch":
        model = bundle.model.eval()
        device = next(model.parameters()).device

        @torch.no_grad()
        def run(batch):
            feeds = {k: torch.as_tensor(v).to(device) for k, v in batch.items() if k in bundle.arch.inputs}
            return model(**feeds).logits.float().cpu().numpy()

        return Session("pytorch", run)
    path = runtime_file(Path(directory), runtime) if directory is not None else None
    if path is None or not path.is_file():
        raise SlimbertError(f"no {runtime} export in {directory}: {path.name if path else runtime} is missing; "
                            "artifacts written by `slimbert compress` have one per runtime it could convert to")
    if runtime == "onnxruntime" and path.name == SEGMENTS_INDEX:
        return Session("onnxruntime", _adaptive_run(OnnxSegments(path.parent, threads), adaptive, bundle.arch.inputs))
    if runtime == "onnxruntime":
        session = onnx_session(path, threads, spinning)
        return Session("onnxruntime", lambda batch: onnx_logits(session, batch))
    compiled = openvino_model(path, threads)
    return Session("openvino", lambda batch: openvino_logits(compiled, batch))


def _adaptive_run(segments, settings: AdaptiveSettings,
                  names: tuple[str, ...]) -> Callable[[dict[str, Any]], np.ndarray]:
    """A batch -> logits function running ``segments`` through the adaptive runner."""

    @torch.no_grad()
    def run(batch):
        feeds = {k: torch.as_tensor(v) for k, v in batch.items() if k in names}
        return run_adaptive(segments, feeds, settings).logits.float().numpy()

    return run
