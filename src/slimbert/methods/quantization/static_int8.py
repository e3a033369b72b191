"""Static post-training int8 quantization (``method: static-int8``).

Weights and activations in int8, with every activation quantizer fixed ahead of time (Jacob et
al. 2018; the static mode of ONNX Runtime): the input range of each encoder linear is measured
on a calibration set (``calibration_samples`` training examples, default 512, drawn with a
fixed seed) run through the float model, and stored as a uint8 scale and zero point.

* PyTorch: :class:`~slimbert.methods.quantization.common.int8_modules.Int8StaticLinear` (``torch._int_mm``).
* ONNX Runtime: ``ort-static-int8`` quantizes the unfused float graph to QDQ with the same
  scales (:mod:`~slimbert.methods.quantization.common.onnx_static`); no data is needed to re-export.

Unlike dynamic int8, no per-token range is computed at run time, at the risk of clipping
activations the calibration set did not show (``calibration: percentile`` clips on purpose).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from slimbert.config import check_range
from slimbert.data.encoding import encode
from slimbert.errors import ConfigError
from slimbert.methods.quantization.common.accuracy_gate import QuantStepConfig, enforce_accuracy
from slimbert.methods.quantization.common.calibration import ActivationQuant, observe_inputs
from slimbert.methods.quantization.common.embeddings import quantize_word_embeddings
from slimbert.methods.quantization.common.int8_modules import Int8StaticLinear
from slimbert.methods.quantization.common.lowbit import encoder_linears, layer_fallback
from slimbert.methods.quantization.common.onnx_static import ORT_STATIC_INT8
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import set_module
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method

CALIBRATION_SEED = 0


@dataclass(frozen=True)
class StaticInt8Config(QuantStepConfig):
    """Static int8: int8 weights (per channel) and int8 activations with ranges fixed by calibration."""

    calibration_samples: int = 512
    calibration: Literal["minmax", "percentile"] = "minmax"
    percentile: float = 99.99  # for calibration: percentile
    per_channel: bool = True

    def validate(self) -> None:
        super().validate()
        if self.calibration_samples < 1:
            raise ConfigError(f"calibration_samples must be >= 1 (static quantization measures activation "
                              f"ranges on them), got {self.calibration_samples}")
        check_range("percentile", self.percentile, 50, 100, low_inclusive=False)


def calibration_examples(ctx: StepContext, n: int) -> list:
    """``n`` training examples drawn with a fixed seed; a clear error when there are none."""
    examples = ctx.data.train_examples()
    if not examples:
        raise ConfigError("the calibration set is empty: the task's training split has no examples "
                          "(check the data directory and --max-train-samples); static int8 needs at least one "
                          "example to measure activation ranges")
    return random.Random(CALIBRATION_SEED).sample(examples, min(n, len(examples)))


@register_method("static-int8", StaticInt8Config, family="quantization", quantizes=True, fallback="layers")
def apply_static_int8(bundle: ModelBundle, cfg: StaticInt8Config, ctx: StepContext) -> ModelBundle:
    """Static post-training int8 of the encoder linears, calibrated on training examples."""
    examples = calibration_examples(ctx, cfg.calibration_samples)
    dataset = encode(examples, bundle.tokenizer, ctx.settings.seq_len)
    linears = {path: module for path, (_, module) in encoder_linears(bundle.model).items()}
    ranges = observe_inputs(bundle.model, linears, dataset, pad_token_id=bundle.tokenizer.pad_token_id or 0,
                            method=cfg.calibration, percentile=cfg.percentile)
    quants = {path: ActivationQuant.from_range(*r) for path, r in ranges.items()}
    final = {}
    for path, linear in linears.items():
        final[path] = Int8StaticLinear.from_float_static(linear, quants[path].scale, quants[path].zero_point,
                                                         cfg.per_channel)
        set_module(bundle.model, path, final[path])
    embeddings = quantize_word_embeddings(bundle, cfg.embedding_bits)
    ctx.note(f"static int8 calibrated on {len(examples)} training examples ({cfg.calibration})")

    def transform(kept_fp32: set[str]) -> dict:
        return {"name": ORT_STATIC_INT8, "per_channel": cfg.per_channel,
                "activations": {p: q.to_list() for p, q in quants.items() if p not in kept_fp32}}

    fallback = layer_fallback(bundle.model, final, lambda path: linears[path])
    kept_fp32 = fallback.paths(enforce_accuracy(bundle, ctx, "static-int8", fallback, transform))
    bundle.onnx_transforms.append(transform(kept_fp32))
    n = len(final) - len(kept_fp32)
    what = f"{n} encoder linears" + (f" ({len(kept_fp32)} kept fp32 by the accuracy gate)" if kept_fp32 else "")
    ctx.claim("size", "disk", True, f"{what} stored as int8 with fp32 scales" + (f"; {embeddings}" if embeddings else ""))
    ctx.claim("speed", "pytorch", True, "int8 x int8 -> int32 matrix products (torch._int_mm) with calibrated "
                                        "activation scales: no per-token range computation at run time")
    ctx.claim("speed", "onnxruntime", True, "ONNX Runtime static int8 (QDQ -> MatMulIntegerToFloat) with the "
                                            "calibrated scales; offline attention fusion is not applied to this graph")
    return bundle
