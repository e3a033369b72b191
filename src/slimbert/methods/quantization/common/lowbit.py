"""What the quantization-aware methods share: wrap the encoder linears, train, bake, fall back.

``wrap_encoder_linears`` swaps every encoder linear for a
:class:`~slimbert.methods.quantization.common.fake_quant.FakeQuantLinear` (weight quantizer chosen per
layer and role by the method); after training, ``bake`` swaps each wrapper for the module that is
saved (packed low-bit, or int8), and ``layer_fallback`` prepares the higher-precision stand-ins
the accuracy gate may put back. Activation ranges learned during training become the static
int8 parameters of the ONNX Runtime graph (``activation_quants``).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from slimbert.methods.quantization.common.accuracy_gate import LayerFallback, QuantStepConfig, enforce_accuracy
from slimbert.methods.quantization.common.calibration import ActivationQuant
from slimbert.methods.quantization.common.embeddings import bake_word_embeddings
from slimbert.methods.quantization.common.fake_quant import FakeQuantEmbedding, FakeQuantLinear, WeightQuantizer
from slimbert.methods.quantization.common.int8_modules import Int8DynamicLinear
from slimbert.methods.quantization.common.onnx_static import ORT_STATIC_INT8
from slimbert.methods.quantization.common.packed import PackedLinear
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import LayerView, layer_views, set_module
from slimbert.steps.context import StepContext

QuantizerFactory = Callable[[LayerView, str, nn.Linear], WeightQuantizer]


def encoder_linears(model: nn.Module) -> dict[str, tuple[int, nn.Module]]:
    """(layer index, module) of every encoder linear (q, k, v, attention output, FFN in/out), by path."""
    return {view.module_path(role): (view.index, module)
            for view in layer_views(model) for role, module in view.linears().items()}


def wrap_encoder_linears(model: nn.Module, make_quantizer: QuantizerFactory, act_bits: int | None,
                         momentum: float = 0.9) -> dict[str, FakeQuantLinear]:
    """Wrap every encoder linear for quantization-aware training; return the wrappers by path."""
    wrappers = {}
    for view in layer_views(model):
        for role, linear in view.linears().items():
            wrapper = FakeQuantLinear(linear, make_quantizer(view, role, linear), act_bits, momentum)
            view.replace(role, wrapper)
            wrappers[view.module_path(role)] = wrapper
    return wrappers


def packed_from_wrapper(wrapper: FakeQuantLinear) -> PackedLinear:
    """The packed linear storing exactly the codes and scales the wrapper trained with."""
    quantizer = wrapper.weight_quantizer
    codes, scales = quantizer.quantize(wrapper.linear.weight)
    packed = PackedLinear.empty_like(wrapper.linear, quantizer.bits, "uniform", quantizer.row_block,
                                     quantizer.col_block)
    packed.set_uniform(codes, scales)
    return packed


def bake(model: nn.Module, wrappers: dict[str, FakeQuantLinear],
         make_final: Callable[[str, FakeQuantLinear], nn.Module]) -> dict[str, nn.Module]:
    """Replace each wrapper by ``make_final(path, wrapper)``; return the new modules by path."""
    final = {}
    for path, wrapper in wrappers.items():
        final[path] = make_final(path, wrapper)
        set_module(model, path, final[path])
    return final


def activation_quants(wrappers: dict[str, FakeQuantLinear]) -> dict[str, ActivationQuant]:
    """The learned (moving-average) input ranges as symmetric int8 quantizers on uint8 (zero point 128)."""
    return {path: ActivationQuant.symmetric(float(w.act_range.amax), w.act_bits)
            for path, w in wrappers.items() if w.act_range is not None}


def layer_fallback(model: nn.Module, final: dict[str, nn.Module],
                   make_fallback: Callable[[str], nn.Module]) -> LayerFallback:
    """Group the baked modules by encoder layer with their higher-precision stand-ins."""
    layer_of = {path: layer for path, (layer, _) in encoder_linears(model).items()}
    quantized: dict[int, dict[str, nn.Module]] = {}
    fallback: dict[int, dict[str, nn.Module]] = {}
    for path, module in final.items():
        quantized.setdefault(layer_of[path], {})[path] = module
        fallback.setdefault(layer_of[path], {})[path] = make_fallback(path)
    return LayerFallback(quantized, fallback)


def int8_fallback(latent: dict[str, nn.Linear]) -> Callable[[str], nn.Module]:
    """Fallback for low-bit layers: int8 per-channel weights (real int8 kernels) from the latent weights."""
    return lambda path: Int8DynamicLinear.from_float(latent[path])


def stored_bits(model: nn.Module, paths: list[str]) -> float:
    """Average bits per weight actually stored by the given modules (codes, scales, codebooks, outliers)."""
    stored = weights = 0
    for path, module in model.named_modules():
        if path in paths:
            stored += 8 * sum(b.numel() * b.element_size() for name, b in module.named_buffers()
                              if b is not None and name != "bias")
            stored += 8 * sum(p.numel() * p.element_size() for name, p in module.named_parameters() if name != "bias")
            weights += module.in_features * module.out_features
    return stored / max(weights, 1)


def finish_low_bit(bundle: ModelBundle, ctx: StepContext, cfg: QuantStepConfig, method: str,
                   wrappers: dict[str, FakeQuantLinear], embedding: FakeQuantEmbedding | None, stored: str,
                   onnx_int8: bool, onnx_detail: str) -> None:
    """After quantization-aware training to low-bit weights: bake the wrappers into packed linears,
    run the accuracy gate (falling back to int8 per layer), export int8 to ONNX Runtime when asked
    (``onnx_int8``, with the learned activation ranges), and state the claims.

    ``stored`` describes the packed weights for the size claim; ``onnx_detail`` the int8 ONNX path.
    """
    model = bundle.model
    quants = activation_quants(wrappers)
    latent = {path: w.linear for path, w in wrappers.items()}
    final = bake(model, wrappers, lambda path, w: packed_from_wrapper(w))
    embeddings = bake_word_embeddings(bundle, embedding)
    transform = ({"name": ORT_STATIC_INT8, "per_channel": True, "activations": {p: q.to_list() for p, q in quants.items()}}
                 if onnx_int8 and quants else None)
    restored = enforce_accuracy(bundle, ctx, method, layer_fallback(model, final, int8_fallback(latent)),
                                lambda kept: transform)
    average = stored_bits(model, list(final))
    ctx.note(f"{method}: encoder linears store {average:.2f} bits per weight"
             + (f"; layers {restored} fell back to int8" if restored else ""))
    ctx.claim("size", "disk", True, f"{stored} ({average:.2f} bits/weight stored)" + (f"; {embeddings}" if embeddings else ""))
    ctx.claim("speed", "pytorch", False, "no low-bit kernel here: PyTorch decodes the packed weights to fp32 at load")
    if transform is not None:
        bundle.onnx_transforms.append(transform)
        ctx.claim("speed", "onnxruntime", True, onnx_detail)
    else:
        ctx.claim("speed", "onnxruntime", False, "the ONNX graph holds the decoded fp32 weights")
