"""The accuracy gate any recipe step may carry, checked on the runtime that will serve the model.

    - method: prune-heads
      fraction: 0.5
      max_metric_drop: 1.0        # points of the task's main metric (x100)
      on_exceed: fallback         # or error (the default)
      gate_against: input         # or previous (the model before this step)

After the step, the model is evaluated on the gate runtime (the recipe's ``runtime``, else ONNX Runtime:
per-tensor int8 activations there can cost what PyTorch's per-token ones do not) and compared with the
recipe's input model, or with the previous step's model, evaluated there too. A larger drop, or a
degenerate model (one class for nearly every example where the reference does not; a metric at or below
the majority-class baseline), fails the step with a clear error; with ``on_exceed: fallback`` a method
that has a fallback retries milder (its docstring states the search and its cost): structured and
unstructured pruning remove less, Q-BERT and GOBO use more bits, and the int8/low-bit methods restore
the most sensitive layers to higher precision one at a time (see ``quantization/common/accuracy_gate``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slimbert.config import check_range
from slimbert.export.onnx import export_onnx
from slimbert.export.openvino import OPENVINO_DIR, export_openvino
from slimbert.export.runtimes import open_session
from slimbert.models.artifact import ONNX_NAME
from slimbert.models.bundle import ModelBundle
from slimbert.training.evaluate import Evaluation
from slimbert.training.task_data import TaskDataset

GATE_KEYS = ("max_metric_drop", "on_exceed", "gate_against")
DEFAULT_GATE_RUNTIME = "onnxruntime"


@dataclass(frozen=True)
class StepGate:
    """``max_metric_drop`` points of the main metric at most; ``on_exceed``: fail, or retry milder."""

    max_metric_drop: float
    on_exceed: Literal["error", "fallback"] = "error"
    gate_against: Literal["input", "previous"] = "input"

    def validate(self) -> None:
        check_range("max_metric_drop", self.max_metric_drop, 0, None)


def evaluate_on(bundle: ModelBundle, data: TaskDataset, runtime: str, work_dir: Path) -> Evaluation:
    """The task evaluation of ``bundle`` on ``runtime`` (PyTorch directly; ONNX Runtime and OpenVINO through a
    temporary export of the model as it stands, with its ONNX transforms / int8 calibration)."""
    tokenizer = bundle.tokenizer
    pad = tokenizer.pad_token_id or 0
    if runtime == "pytorch":
        session = open_session(bundle, None, "pytorch")
        return data.evaluation(lambda ds: session.predict(ds, pad_token_id=pad), tokenizer)
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gate-", dir=work_dir) as tmp:
        if runtime == "onnxruntime":
            export_onnx(bundle, Path(tmp) / ONNX_NAME)
        else:
            export_openvino(bundle, Path(tmp) / OPENVINO_DIR, calibration=data.train_set(tokenizer))
        session = open_session(bundle, tmp, runtime)
        return data.evaluation(lambda ds: session.predict(ds, pad_token_id=pad), tokenizer)
