"""Quantization-aware training to int8, Q8BERT-style (``method: qat-int8``; Zafrir et al. 2019).

Every encoder linear trains with symmetric 8-bit fake quantization of its weight (per output
channel, max-based scale) and of its input (scale from a moving average of max|x|), gradients
passing through the rounding by the straight-through estimator; the one training loop runs it
(fine-tuning on the task's labels). The trained model is then baked into a *real* int8 model:

* PyTorch: :class:`~slimbert.methods.quantization.common.int8_modules.Int8StaticLinear` (int8 weights saved,
  activation scales = the learned ranges, ``torch._int_mm``);
* ONNX Runtime: ``ort-static-int8`` QDQ with the learned scales (not re-calibrated).

The symmetric int8 activation grid [-127, 127] * s is ONNX Runtime's uint8 grid with zero
point 128, so both runtimes compute what training simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.config import check_range
from slimbert.methods.quantization.common.accuracy_gate import QuantStepConfig, enforce_accuracy
from slimbert.methods.quantization.common.embeddings import bake_word_embeddings, wrap_word_embeddings
from slimbert.methods.quantization.common.fake_quant import UniformWeightQuantizer
from slimbert.methods.quantization.common.int8_modules import Int8StaticLinear
from slimbert.methods.quantization.common.lowbit import activation_quants, bake, layer_fallback, wrap_encoder_linears
from slimbert.methods.quantization.common.onnx_static import ORT_STATIC_INT8
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class QatInt8Config(QuantStepConfig):
    """Q8BERT: int8 fake quantization of weights and activations during fine-tuning, baked to real int8."""

    per_channel: bool = True  # one weight scale per output channel (Q8BERT used one per matrix)
    momentum: float = 0.9  # moving average of the activation ranges
    train: TrainConfig = TrainConfig(learning_rate=2e-5, epochs=1.0)

    def validate(self) -> None:
        super().validate()
        check_range("momentum", self.momentum, 0, 1, high_inclusive=False)
        self.train.validate()


@register_method("qat-int8", QatInt8Config, family="quantization", accepts_distill=True, quantizes=True,
                 fallback="layers")
def apply_qat_int8(bundle: ModelBundle, cfg: QatInt8Config, ctx: StepContext) -> ModelBundle:
    """Quantization-aware fine-tuning (8-bit weights and activations), baked to a real int8 model."""
    model = bundle.model
    wrappers = wrap_encoder_linears(
        model, lambda view, role, linear: UniformWeightQuantizer(8, 1 if cfg.per_channel else None),
        act_bits=8, momentum=cfg.momentum)
    embedding = wrap_word_embeddings(bundle, cfg.embedding_bits)
    result = ctx.train(bundle, cfg.train, name="qat",
                       description="quantization-aware training (int8)")
    ctx.note(f"QAT for {result.summary()}")

    quants = activation_quants(wrappers)
    latent = {path: w.linear for path, w in wrappers.items()}
    final = bake(model, wrappers, lambda path, w: Int8StaticLinear.from_float_static(
        w.linear, quants[path].scale, quants[path].zero_point, cfg.per_channel))
    embeddings = bake_word_embeddings(bundle, embedding)

    def transform(kept_fp32: set[str]) -> dict:
        return {"name": ORT_STATIC_INT8, "per_channel": cfg.per_channel,
                "activations": {p: q.to_list() for p, q in quants.items() if p not in kept_fp32}}

    fallback = layer_fallback(model, final, lambda path: latent[path])
    kept_fp32 = fallback.paths(enforce_accuracy(bundle, ctx, "qat-int8", fallback, transform))
    bundle.onnx_transforms.append(transform(kept_fp32))
    what = f"{len(final) - len(kept_fp32)} encoder linears" + (
        f" ({len(kept_fp32)} kept fp32 by the accuracy gate)" if kept_fp32 else "")
    ctx.claim("size", "disk", True, f"{what} stored as int8 with fp32 scales (not fake-quant fp32)"
              + (f"; {embeddings}" if embeddings else ""))
    ctx.claim("speed", "pytorch", True, "int8 x int8 -> int32 matrix products (torch._int_mm) with the learned "
                                        "activation scales")
    ctx.claim("speed", "onnxruntime", True, "ONNX Runtime static int8 (QDQ -> MatMulIntegerToFloat) with the "
                                            "activation ranges learned in training")
    return bundle
