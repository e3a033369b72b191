"""ONNX Runtime static int8 (QDQ) from activation quantizers recorded in the bundle.

``ort-static-int8`` params: ``{"activations": {module_path: [scale, zero_point]}, "per_channel": bool}``.
The activation parameters come from PyTorch (calibration for static PTQ, moving averages for
QAT), so the transform is self-contained: a reloaded artifact re-exports to the same graph
without data, and ONNX Runtime quantizes exactly where and how the PyTorch int8 modules do.

It works on the *unfused* float graph (registered with ``on_unfused_graph``): the fused graph's
contrib ops (Attention, SkipLayerNormalization) have no type information for ORT's quantization
tools and hide the q/k/v MatMuls inside Attention. The MatMul of each recorded linear gets a
QuantizeLinear/DequantizeLinear pair on its input (uint8, the recorded scale and zero point) and
int8 per-channel weights; ONNX Runtime turns each pattern into ``MatMulIntegerToFloat`` and
still fuses LayerNorm/GELU when it loads the session.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from slimbert.errors import SlimbertError
from slimbert.export.onnx import quiet_root_logging, register_onnx_transform

ORT_STATIC_INT8 = "ort-static-int8"
EXPORT_SCOPE = "model."  # the export wrapper (_LogitsOnly) holds the task model as `.model`


def linear_matmuls(model) -> dict[str, object]:
    """MatMul nodes with a constant weight, by the path of the torch module they were exported from.

    TorchScript names a linear's MatMul ``/model/bert/encoder/layer.0/attention/self/query/MatMul``;
    the scope before the op name is the module path with "/" for ".".
    """
    initializers = {i.name for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        scope = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        found[scope.removeprefix(EXPORT_SCOPE)] = node
    return found


def matmul_nodes_for(model, paths: list[str]) -> dict[str, object]:
    """The MatMul node of each module path; a clear error when a path has none in the graph."""
    nodes = linear_matmuls(model)
    missing = [p for p in paths if p not in nodes]
    if missing:
        raise SlimbertError(f"the exported graph has no weight MatMul for {missing[:3]} (of {len(missing)}); "
                            f"found MatMuls for e.g. {sorted(nodes)[:3]}. Was the graph fused before this transform?")
    return {p: nodes[p] for p in paths}


def input_ranges(model, activations: dict[str, list]) -> dict[str, tuple[float, float]]:
    """[rmin, rmax] per MatMul input tensor reproducing each recorded (scale, zero_point) in ORT.

    ORT derives uint8 parameters as ``scale = (rmax - rmin) / 255``, ``zero_point = round(-rmin / scale)``;
    ``rmin = -zero_point * scale`` and ``rmax = (255 - zero_point) * scale`` give them back. Linears
    reading the same tensor (q, k and v) get the widest of their ranges.
    """
    ranges: dict[str, tuple[float, float]] = {}
    for path, node in matmul_nodes_for(model, list(activations)).items():
        scale, zero_point = activations[path]
        low, high = -zero_point * scale, (255 - zero_point) * scale
        if node.input[0] in ranges:
            old_low, old_high = ranges[node.input[0]]
            low, high = min(low, old_low), max(high, old_high)
        ranges[node.input[0]] = (low, high)
    return ranges


@register_onnx_transform(ORT_STATIC_INT8, on_unfused_graph=True, int8=True)
def ort_static_int8(src: Path, dst: Path, params: dict) -> None:
    """Quantize the recorded linears of the unfused float graph to int8 QDQ with fixed activation ranges."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData, save_tensors_data

    activations = params["activations"]
    if not activations:  # every layer fell back to fp32: nothing to quantize
        shutil.copyfile(src, dst)
        return
    model = onnx.load(str(src))
    nodes = matmul_nodes_for(model, list(activations))
    ranges = input_ranges(model, activations)
    with tempfile.TemporaryDirectory(prefix="slimbert-calib-") as tmp, quiet_root_logging():
        # The ranges are known: hand them to quantize_static as its calibration cache, so it runs no data.
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax,
                                      {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()}), cache)
        quantize_static(
            str(src), str(dst), None, quant_format=QuantFormat.QDQ, per_channel=params.get("per_channel", True),
            nodes_to_quantize=[n.name for n in nodes.values()], activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibration_cache_path=cache,
            # The PyTorch modules quantize a linear's input only; its output stays fp32 (bias add next).
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]},
        )
