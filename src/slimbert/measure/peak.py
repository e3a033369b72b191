"""The compute floor: how fast could a model run here, and how far from that is each runtime?

The ceiling of each runtime is measured, not assumed: the throughput of one large matrix product
(N x N by N x N, 2 N^3 operations) on that runtime, in fp32 and in int8 (shared/docs/RUNTIMES.md did the
same by hand). A model's floor at batch B is then ``B x FLOPs per example / peak``, and its measured
latency divided by that floor says how far it is from the hardware: 1.0 would be every cycle spent in
its matrix products at full speed; small models and short inputs are overhead-bound and sit far above.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

GEMM_N = 2048
PRECISIONS = ("fp32", "int8")


def _median_seconds(run, runs: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _onnx_gemm(path: Path, n: int, int8: bool) -> None:
    """An ONNX graph computing X @ W with W a constant: plain fp32, or QDQ int8 (what runtimes run in int8)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "W")
    nodes, inits = [], [w]
    x, weight = "X", "W"
    if int8:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.uint8), "xz"),
                  numpy_helper.from_array(np.array(0.05, np.float32), "ws"), numpy_helper.from_array(np.array(0, np.int8), "wz")]
        nodes += [helper.make_node("QuantizeLinear", ["X", "xs", "xz"], ["Xq"]),
                  helper.make_node("DequantizeLinear", ["Xq", "xs", "xz"], ["Xd"]),
                  helper.make_node("QuantizeLinear", ["W", "ws", "wz"], ["Wq"]),
                  helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"])]
        x, weight = "Xd", "Wd"
    nodes.append(helper.make_node("MatMul", [x, weight], ["Y"]))
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, n])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def floor_ms(batch: int, flops_per_example: float, peak_gops: float) -> float:
    """The compute floor: milliseconds for ``batch`` examples' products at the measured ``peak`` (GOP/s)."""
    return batch * flops_per_example / (peak_gops * 1e9) * 1e3


@lru_cache(maxsize=4)
def gemm_peaks(threads: int = 2, n: int = GEMM_N) -> dict[str, dict[str, float]]:
    """``{runtime: {"fp32": GFLOP/s, "int8": GOP/s}}`` of an N x N x N matrix product on each runtime (measured
    once per process and thread count: they are facts of the machine)."""
    from slimbert.export.onnx import onnx_session
    from slimbert.export.openvino import openvino_model

    torch.set_num_threads(threads)
    ops = 2 * n ** 3 / 1e9
    peaks: dict[str, dict[str, float]] = {"pytorch": {}, "onnxruntime": {}, "openvino": {}}
    a, b = torch.randn(n, n), torch.randn(n, n)
    peaks["pytorch"]["fp32"] = ops / _median_seconds(lambda: torch.mm(a, b))
    ai, bi = torch.randint(-127, 127, (n, n), dtype=torch.int8), torch.randint(-127, 127, (n, n), dtype=torch.int8)
    peaks["pytorch"]["int8"] = ops / _median_seconds(lambda: torch._int_mm(ai, bi))
    x = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="slimbert-peak-") as tmp:
        for precision in PRECISIONS:
            path = Path(tmp) / f"gemm-{precision}.onnx"
            _onnx_gemm(path, n, precision == "int8")
            session = onnx_session(path, threads, spinning=False)
            peaks["onnxruntime"][precision] = ops / _median_seconds(lambda: session.run(None, {"X": x}))
            compiled = openvino_model(path, threads, hint="f32" if precision == "fp32" else None)
            peaks["openvino"][precision] = ops / _median_seconds(lambda: compiled({"X": x}))
    return peaks
