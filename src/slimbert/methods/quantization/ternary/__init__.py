"""TernaryBERT: ternary weights, 8-bit activations, distilled from the fp32 model (``method: ternary``; Zhang et al. 2020).

Every encoder linear trains with ternary fake-quantized weights (alpha * {-1, 0, +1} per group;
TWN or loss-aware thresholds, :mod:`~slimbert.methods.quantization.ternary.ternarize`) and 8-bit fake
quantized inputs, while the full-precision input model teaches it: soft cross-entropy on the
logits plus MSE on every layer's hidden states (TernaryBERT's distillation, here through
:class:`~slimbert.training.distillation.loss_term.DistillationLoss`), through the one training loop.
The baked weights are stored packed at 2 bits per weight plus one fp32 alpha per group.

Loss-aware ternarization needs Adam's second moments; :class:`SecondMomentCallback` keeps the
same moving average of squared gradients in each quantizer's buffer (saved with checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from slimbert.config import check_range
from slimbert.errors import ConfigError
from slimbert.methods.quantization.common.accuracy_gate import QuantStepConfig
from slimbert.methods.quantization.common.embeddings import wrap_word_embeddings
from slimbert.methods.quantization.common.fake_quant import FakeQuantLinear, UniformWeightQuantizer
from slimbert.methods.quantization.common.lowbit import finish_low_bit, wrap_encoder_linears
from slimbert.methods.quantization.common.uniform import check_bits
from slimbert.methods.quantization.ternary.quantizer import TernaryWeightQuantizer
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.steps.teacher import StepDistillation
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig

# TernaryBERT's distillation (Zhang et al. 2020): soft cross-entropy on the logits at T = 1 plus MSE on every
# layer's hidden states, no hard labels. A recipe's `distill:` block is merged onto it field by field.
TERNARYBERT_DISTILLATION = StepDistillation(temperature=1.0, logits_weight=1.0, hard_label_weight=0.0, hidden_weight=1.0)


@dataclass(frozen=True)
class TernaryConfig(QuantStepConfig):
    """TernaryBERT: ternary weights (TWN or loss-aware), 8-bit activations, distillation from the fp32 model.

    ``embedding_bits: 2`` ternarizes the word embeddings too (row-wise TWN, as TernaryBERT does).
    """

    mode: Literal["twn", "lat"] = "twn"
    row_block: int | None = None  # rows sharing one alpha (TernaryBERT: the whole matrix)
    act_bits: int | None = 8
    beta2: float = 0.999  # Adam's second-moment decay, for loss-aware ternarization
    momentum: float = 0.9
    onnx_int8: bool = True  # ONNX Runtime: ternary weights are exact in int8; static int8 activations
    train: TrainConfig = TrainConfig(learning_rate=5e-5, epochs=1.0)

    def validate(self) -> None:
        super().validate()
        if self.row_block is not None and self.row_block < 1:
            raise ConfigError(f"row_block must be >= 1 (or null for one alpha per matrix), got {self.row_block}")
        if self.act_bits is not None:
            check_bits(self.act_bits, "act_bits")
        check_range("beta2", self.beta2, 0, 1, high_inclusive=False)
        check_range("momentum", self.momentum, 0, 1, high_inclusive=False)
        self.train.validate()


class SecondMomentCallback(Callback):
    """After each backward pass: ``v <- beta2 * v + (1 - beta2) * g^2`` for loss-aware ternary weights."""

    def __init__(self, wrappers: dict[str, FakeQuantLinear], beta2: float):
        self.wrappers = wrappers
        self.beta2 = beta2

    def on_after_backward(self, state, model: nn.Module) -> None:
        for wrapper in self.wrappers.values():
            grad = wrapper.linear.weight.grad
            if grad is not None:
                wrapper.weight_quantizer.second_moment.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)


def embedding_quantizer(bits: int | None):
    """Row-wise ternary (TWN) tables at 2 bits, uniform row-wise scales otherwise."""
    if bits is None:
        return None
    return TernaryWeightQuantizer(mode="twn", row_block=1) if bits == 2 else UniformWeightQuantizer(bits, row_block=1)


@register_method("ternary", TernaryConfig, family="quantization", accepts_distill=True,
                 default_distill=TERNARYBERT_DISTILLATION, quantizes=True, fallback="layers")
def apply_ternary(bundle: ModelBundle, cfg: TernaryConfig, ctx: StepContext) -> ModelBundle:
    """TernaryBERT: ternary encoder weights trained with distillation from the fp32 input model, stored at 2 bits."""
    model = bundle.model
    wrappers = wrap_encoder_linears(
        model, lambda view, role, linear: TernaryWeightQuantizer(tuple(linear.weight.shape), cfg.mode, cfg.row_block),
        act_bits=cfg.act_bits, momentum=cfg.momentum)
    embedding = wrap_word_embeddings(bundle, cfg.embedding_bits, embedding_quantizer(cfg.embedding_bits))
    callbacks = [SecondMomentCallback(wrappers, cfg.beta2)] if cfg.mode == "lat" else []
    what = "with distillation" if ctx.distillation is not None else "on the task labels (distill: null)"
    result = ctx.train(bundle, cfg.train, callbacks=callbacks, name="ternary",
                       description=f"TernaryBERT ({cfg.mode}) {what}")
    ctx.note(f"TernaryBERT trained for {result.summary()}")

    finish_low_bit(bundle, ctx, cfg, "ternary", wrappers, embedding,
                   "ternary encoder weights packed at 2 bits + one fp32 alpha per group", cfg.onnx_int8,
                   "int8 kernels: ternary weights are exact on the int8 grid, activations at the learned 8-bit "
                   "ranges (no ternary-specific kernel)")
    return bundle
