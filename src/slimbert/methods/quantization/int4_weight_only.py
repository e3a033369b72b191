"""4-bit weight-only quantization for ONNX Runtime's block-wise 4-bit MatMul (``method: int4-weight-only``).

Each encoder linear's weight is quantized in blocks of ``block_size`` consecutive input columns
per output row, on the grid of ONNX Runtime's ``MatMulNBits`` (symmetric): the block's scale is
its largest-magnitude weight divided by -8 and codes are ``clamp(round(w / s), -8, 7)``. Because
slimbert uses the same grid, ONNX Runtime's quantizer (``onnxruntime.quantization``'s
``MatMulNBitsQuantizer``, applied by the ``ort-int4-weight-only`` transform) re-quantizes the
decoded weights to exactly the same codes: both runtimes hold the same 4-bit model.

* Disk: :class:`~slimbert.methods.quantization.common.packed.PackedLinear` (4-bit codes + fp32 scale
  per block: 4 + 32/block_size bits per weight).
* ONNX Runtime: ``MatMulNBits`` kernels; ``compute: int8`` lets them quantize activations to
  int8 per block (``accuracy_level`` 4), ``fp32`` computes in fp32 (``accuracy_level`` 1).
  Whether that is faster than fp32 depends on the model: it is measured, not assumed.
* PyTorch: no 4-bit kernel; weights are decoded to fp32.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from slimbert.errors import ConfigError
from slimbert.export.onnx import quiet_root_logging, register_onnx_transform
from slimbert.methods.quantization.common.accuracy_gate import QuantStepConfig, enforce_accuracy
from slimbert.methods.quantization.common.embeddings import quantize_word_embeddings
from slimbert.methods.quantization.common.lowbit import encoder_linears, layer_fallback, stored_bits
from slimbert.methods.quantization.common.onnx_static import matmul_nodes_for
from slimbert.methods.quantization.common.packed import PackedLinear
from slimbert.methods.quantization.common.uniform import expand_groups, group_reduce
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import set_module
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method

ORT_INT4 = "ort-int4-weight-only"
INT4_MIN, INT4_MAX = -8, 7
ACCURACY_LEVEL = {"fp32": 1, "int8": 4}


@dataclass(frozen=True)
class Int4WeightOnlyConfig(QuantStepConfig):
    """4-bit block-wise weights (ONNX Runtime MatMulNBits grid), activations in float."""

    block_size: int = 32
    compute: Literal["fp32", "int8"] = "int8"

    def validate(self) -> None:
        super().validate()
        if self.block_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"block_size must be one of 16, 32, 64, 128, 256 (MatMulNBits), got {self.block_size}")


def quantize_int4_blocks(w: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (R, C) int8 in [-8, 7] and scales (R, ceil(C / block)) on ONNX Runtime's symmetric 4-bit grid.

    The scale of a block is its largest-magnitude weight divided by -8 (so that weight is code -8,
    and the scale may be negative).
    """
    w = w.detach().float()
    largest = group_reduce(w, 1, block, "amax")  # (R, G)
    smallest = group_reduce(w, 1, block, "amin")
    signed_max = torch.where(largest >= -smallest, largest, smallest)
    scales = torch.where(signed_max == 0, torch.full_like(signed_max, -1e-12), signed_max / INT4_MIN)
    codes = torch.clamp(torch.round(w / expand_groups(scales, 1, block, *w.shape)), INT4_MIN, INT4_MAX)
    return codes.to(torch.int8), scales


def int4_linear(linear, block: int) -> PackedLinear:
    codes, scales = quantize_int4_blocks(linear.weight, block)
    packed = PackedLinear.empty_like(linear, 4, "uniform", row_block=1, col_block=block)
    packed.set_uniform(codes, scales)
    return packed


@register_method("int4-weight-only", Int4WeightOnlyConfig, family="quantization", quantizes=True, fallback="layers")
def apply_int4_weight_only(bundle: ModelBundle, cfg: Int4WeightOnlyConfig, ctx: StepContext) -> ModelBundle:
    """4-bit block-wise weights of the encoder linears, run by ONNX Runtime's MatMulNBits kernels."""
    originals = {path: module for path, (_, module) in encoder_linears(bundle.model).items()}
    final = {}
    for path, linear in originals.items():
        final[path] = int4_linear(linear, cfg.block_size)
        set_module(bundle.model, path, final[path])
    embeddings = quantize_word_embeddings(bundle, cfg.embedding_bits)
    def transform(kept_fp32: set[str]) -> dict:
        return {"name": ORT_INT4, "block_size": cfg.block_size, "accuracy_level": ACCURACY_LEVEL[cfg.compute],
                "linears": sorted(p for p in final if p not in kept_fp32)}

    fallback = layer_fallback(bundle.model, final, lambda path: originals[path])
    kept_fp32 = fallback.paths(enforce_accuracy(bundle, ctx, "int4-weight-only", fallback, transform))
    bundle.onnx_transforms.append(transform(kept_fp32))
    quantized = bundle.onnx_transforms[-1]["linears"]
    average = stored_bits(bundle.model, quantized)
    ctx.claim("size", "disk", True, f"{len(quantized)} encoder linears in 4 bits + one fp32 scale per {cfg.block_size} "
              f"weights ({average:.2f} bits/weight stored)" + (f"; {embeddings}" if embeddings else ""))
    ctx.claim("speed", "pytorch", False, "no 4-bit kernel in PyTorch here: weights are decoded to fp32 at load")
    ctx.claim("speed", "onnxruntime", True, f"ONNX Runtime MatMulNBits 4-bit kernels ({cfg.compute} compute); "
                                            "offline attention fusion is not applied to this graph")
    return bundle


@register_onnx_transform(ORT_INT4, on_unfused_graph=True)
def ort_int4_weight_only(src: Path, dst: Path, params: dict) -> None:
    """Replace the recorded linears' MatMuls by 4-bit MatMulNBits (symmetric, block-wise along the input)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if not params["linears"]:  # every layer fell back to fp32: nothing to quantize
        shutil.copyfile(src, dst)
        return
    model = onnx.load(str(src))
    nodes = matmul_nodes_for(model, params["linears"])
    config = DefaultWeightOnlyQuantConfig(block_size=params["block_size"], is_symmetric=True,
                                          accuracy_level=params["accuracy_level"])
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    with quiet_root_logging():
        quantizer = MatMulNBitsQuantizer(model, nodes_to_include=[n.name for n in nodes.values()], algo_config=config)
        quantizer.process()
    quantizer.model.save_model_to_file(str(dst))
