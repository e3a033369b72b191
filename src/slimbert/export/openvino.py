"""OpenVINO, the second fast runtime: an artifact's model as OpenVINO IR (``openvino/model.xml`` + ``.bin``).

The IR is converted from the plain float ONNX graph (OpenVINO reads standard ops, not ONNX Runtime's
fused contrib ops). Where the artifact computes in int8 on ONNX Runtime (dynamic, static, QAT,
low-bit widened to int8), the IR is quantized to int8 too, by NNCF post-training quantization
(``ModelType.TRANSFORMER``, weights and activations, activation ranges calibrated on the task's
training examples): OpenVINO's own int8 scheme, not the artifact's scales, so its accuracy is
measured separately. Other artifacts (fp32, pruned, low-bit kept as decoded fp32) run in fp32.

OpenVINO computes in bf16 on CPUs that have it unless told otherwise (shared/docs/RUNTIMES.md). Every IR
is compiled with an explicit ``INFERENCE_PRECISION_HINT: f32``: an fp32 IR so that "fp32" means fp32, an int8
IR so that the ops NNCF left in float (softmax, layer norms, GELU, residual adds) do not round to bf16. On this
CPU bf16 there made an int8 model's accuracy depend on the batch its inputs were padded into (fast-cpu on 1,000
held-out SST-2 sentences: 86.7 at evaluation batch 32, 85.6 at 128, 87.2 at both with f32; the OpenVINO + NNCF
peer: 88.5, 86.5, 89.2), for 4-5% less latency at batch 1 and 16-18% at batch 32
(``benchmarks/probes/openvino_int8_hint.py``). ``openvino/precision.json`` records the hint; ``bench peers``
shows int8 IRs with both hints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slimbert.data.batching import length_sorted_batches, predict_batches
from slimbert.data.encoding import EncodedDataset, PadCollator
from slimbert.export.onnx import computes_in_int8, export_float_graph
from slimbert.models.bundle import ModelBundle

OPENVINO_DIR = "openvino"
OPENVINO_XML = "model.xml"
PRECISION_FILE = "precision.json"
HINTS = {"fp32": "f32", "int8": "f32"}  # not OpenVINO's default (bf16 for float ops where the CPU has it): see above
CALIBRATION_EXAMPLES = 300  # what NNCF recommends for post-training quantization (and RUNTIMES.md used)
CALIBRATION_BATCH = 8  # examples of similar length per calibration item (38 forward passes, not 300)


@dataclass
class OpenVinoExport:
    path: Path  # the IR's .xml (the .bin beside it)
    precision: str  # "fp32" | "int8"
    max_abs_diff: float = 0.0  # IR logits (f32 hint) vs the float PyTorch model on the check batch
    notes: list[str] = field(default_factory=list)


def calibration_batches(dataset: EncodedDataset, pad_token_id: int, input_names: tuple[str, ...],
                        examples: int = CALIBRATION_EXAMPLES, batch_size: int = 1) -> list[dict[str, np.ndarray]]:
    """The first ``examples`` of ``dataset`` as model inputs (numpy), for NNCF's range calibration."""
    subset = dataset.subset(examples)
    collate = PadCollator(pad_token_id)
    out = []
    for idx in length_sorted_batches(subset, batch_size):
        batch = collate([subset[i] for i in idx])
        out.append({k: v.numpy() for k, v in batch.items() if k in input_names})
    return out


def export_openvino(bundle: ModelBundle, directory: str | Path, calibration: EncodedDataset | None = None) -> OpenVinoExport:
    """Write the bundle's OpenVINO IR under ``directory`` (int8 by NNCF when the bundle computes in int8 and
    calibration examples are given)."""
    import openvino as ov

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="slimbert-openvino-") as tmp:
        raw = Path(tmp) / "float.onnx"
        batch, reference = export_float_graph(bundle, raw)
        model = ov.Core().read_model(str(raw))
        precision = "fp32"
        if computes_in_int8(bundle):
            if calibration is None or len(calibration) == 0:
                notes.append("OpenVINO: no calibration examples, so the IR stays fp32 (the artifact is int8 on "
                             "ONNX Runtime)")
            else:
                model = _nncf_int8(model, calibration_batches(calibration, bundle.tokenizer.pad_token_id or 0,
                                                              bundle.arch.inputs, batch_size=CALIBRATION_BATCH))
                precision = "int8"
                notes.append(f"OpenVINO: int8 by NNCF post-training quantization (weights and activations, ranges "
                             f"from {min(len(calibration), CALIBRATION_EXAMPLES)} training examples), not the "
                             "artifact's own scales")
        xml = directory / OPENVINO_XML
        ov.save_model(model, str(xml), compress_to_fp16=False)
        (directory / PRECISION_FILE).write_text(json.dumps({"precision": precision,
                                                            "inference_precision_hint": HINTS[precision]}))
    diff = float(np.abs(openvino_logits(openvino_model(xml, hint="f32"), batch) - reference).max())
    return OpenVinoExport(path=xml, precision=precision, max_abs_diff=diff, notes=notes)


def nncf_int8_ir(fp32_xml: Path, out_xml: Path, calibration: EncodedDataset, pad_token_id: int,
                 input_names: tuple[str, ...]) -> Path:
    """An int8 IR of an fp32 IR by NNCF post-training quantization (what a user of OpenVINO alone would do)."""
    import openvino as ov

    batches = calibration_batches(calibration, pad_token_id, input_names, batch_size=CALIBRATION_BATCH)
    ov.save_model(_nncf_int8(ov.Core().read_model(str(fp32_xml)), batches), str(out_xml), compress_to_fp16=False)
    return Path(out_xml)


def _nncf_int8(model, batches: list[dict[str, np.ndarray]]):
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    # NNCF draws its progress bars on stdout, which belongs to the command's output (--json must stay parseable).
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(batches))


def _recorded(xml: str | Path) -> dict | None:
    """What was recorded beside an IR at conversion (``precision.json``), None for an IR without it."""
    recorded = Path(xml).with_name(PRECISION_FILE)
    return json.loads(recorded.read_text()) if recorded.is_file() else None


def ir_precision(xml: str | Path) -> str:
    """How an artifact's IR computes ("fp32" | "int8"), as recorded beside it at conversion."""
    recorded = _recorded(xml)
    return recorded.get("precision", "fp32") if recorded is not None else "fp32"


def openvino_hint(xml: str | Path) -> str | None:
    """The inference precision hint recorded beside an IR (None: OpenVINO's default; f32 when nothing is recorded)."""
    recorded = _recorded(xml)
    return recorded.get("inference_precision_hint") if recorded is not None else "f32"


def openvino_model(xml: str | Path, threads: int | None = None, hint: str | None = "recorded"):
    """A compiled OpenVINO CPU model. ``hint``: the inference precision hint ("f32", "bf16", None for OpenVINO's
    default); by default the one recorded beside the IR (f32 when nothing is recorded)."""
    import openvino as ov

    if hint == "recorded":
        hint = openvino_hint(xml)
    config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(str(xml), "CPU", config)


def openvino_logits(compiled, batch: dict[str, torch.Tensor | np.ndarray]) -> np.ndarray:
    names = {port.get_any_name() for port in compiled.inputs}
    feeds = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k in names}
    return compiled(feeds)[0]


def predict_openvino(compiled, dataset: EncodedDataset, batch_size: int = 128, pad_token_id: int = 0) -> np.ndarray:
    """Logits (N, C) of a compiled OpenVINO model over an encoded dataset, in dataset order."""
    return predict_batches(dataset, batch_size, pad_token_id, lambda batch: openvino_logits(compiled, batch))
