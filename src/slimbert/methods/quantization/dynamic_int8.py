"""Post-training dynamic int8 quantization (``method: dynamic-int8``).

Weights are quantized once to int8 (symmetric, per output channel); activations are quantized per
token at run time, so no calibration data is needed. This is the inference mode of Q8BERT
(Zafrir et al., 2019) without its quantization-aware training, and what ONNX Runtime calls dynamic
quantization. Both runtimes run real int8 kernels:

* PyTorch: :class:`~slimbert.methods.quantization.common.int8_modules.Int8DynamicLinear` (``torch._int_mm``).
* ONNX Runtime: ``quantize_dynamic`` on the fused float graph (MatMulInteger / QAttention).

The word embeddings (a fifth of BERT-base's weights) stay fp32 unless ``quantize_embeddings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from slimbert.config import MethodConfig
from slimbert.export.onnx import quiet_root_logging, register_onnx_transform
from slimbert.methods.quantization.common.int8_modules import Int8DynamicLinear, Int8Embedding
from slimbert.models.bundle import ModelBundle
from slimbert.models.module_kinds import replace_plain_linears
from slimbert.models.structure import get_module, layer_views, set_module
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method

ORT_DYNAMIC_INT8 = "ort-dynamic-int8"


@dataclass(frozen=True)
class DynamicInt8Config(MethodConfig):
    """Dynamic int8: int8 weights (per-channel by default), int8 activations quantized per token at run time."""

    quantize_embeddings: bool = False
    per_channel: bool = True


def quantize_linears_dynamic(bundle: ModelBundle, per_channel: bool = True) -> int:
    """Swap every encoder linear (q, k, v, attention output, FFN in/out; both factors of a low-rank pair) for
    an int8 one; return the count of encoder linears quantized."""
    count = 0
    done: dict[int, nn.Module] = {}  # a module shared by several layers is quantized once and stays shared
    for view in layer_views(bundle.model):
        for role, linear in view.linears().items():
            if id(linear) not in done:
                done[id(linear)] = replace_plain_linears(linear, lambda m: Int8DynamicLinear.from_float(m, per_channel))
                count += 1
            view.replace(role, done[id(linear)])
    return count


@register_method("dynamic-int8", DynamicInt8Config, family="quantization", quantizes=True, after_factorization=True,
                 after_sharing=True, after_exit_heads=True)
def apply_dynamic_int8(bundle: ModelBundle, cfg: DynamicInt8Config, ctx: StepContext) -> ModelBundle:
    """Post-training dynamic int8 quantization of the encoder linears (and optionally the word embeddings)."""
    n = quantize_linears_dynamic(bundle, cfg.per_channel)
    if cfg.quantize_embeddings:
        path = bundle.arch.word_embeddings
        set_module(bundle.model, path, replace_plain_linears(get_module(bundle.model, path), Int8Embedding.from_float,
                                                             plain=nn.Embedding))
    bundle.onnx_transforms.append(
        {"name": ORT_DYNAMIC_INT8, "per_channel": cfg.per_channel, "quantize_embeddings": cfg.quantize_embeddings}
    )
    what = f"{n} encoder linears" + (" and the word embeddings" if cfg.quantize_embeddings else "")
    ctx.claim("size", "disk", True, f"{what} stored as int8 with fp32 scales")
    ctx.claim("speed", "pytorch", True, "int8 x int8 -> int32 matrix products (torch._int_mm) with per-token activation scales")
    ctx.claim("speed", "onnxruntime", True, "ONNX Runtime dynamic quantization: MatMulInteger/QAttention int8 kernels")
    return bundle


@register_onnx_transform(ORT_DYNAMIC_INT8, int8=True)
def ort_dynamic_int8(src: Path, dst: Path, params: dict) -> None:
    """ONNX Runtime dynamic quantization of the fused graph: int8 MatMul/Attention weights.

    Embedding lookups (Gather / EmbedLayerNormalization) are left fp32 unless
    ``quantize_embeddings``. ``DefaultTensorType`` is needed on the fused graph, whose custom
    ops lack type information for the quantizer (shared/docs/RUNTIMES.md).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = ["MatMul", "Attention"]
    if params.get("quantize_embeddings"):
        op_types += ["Gather", "EmbedLayerNormalization"]
    with quiet_root_logging():  # the quantizer warns about pre-processing on every call
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=params.get("per_channel", True),
            op_types_to_quantize=op_types, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
