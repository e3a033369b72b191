"""TernaryBERT: ternary weights, 8-bit activations, distilled from the fp32 model (``method: ternary``; Zhang et al. 2020).

Every encoder linear trains with ternary fake-quantized weights (alpha * {-1, 0, +1} per group;
TWN or loss-aware thresholds, :mod:`~slimbert.methods.quantization.ternary`) and 8-bit fake
quantized inputs, while the full-precision input model teaches it: soft cross-entropy on the
logits plus MSE on every layer's hidden states (TernaryBERT's distillation, here through
:class:`~slimbert.methods.distillation.loss_term.DistillationLoss`), through the one training loop.
The baked weights are stored packed at 2 bits per weight plus one fp32 alpha per group.

Loss-aware ternarization needs Adam's second moments; :class:`SecondMomentCallback` keeps the
same moving average of squared gradients in each quantizer's buffer (saved with checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from slimbert.config import check_range
from slimbert.context import StepContext
from slimbert.errors import ConfigError
from slimbert.methods.distillation.loss_term import DistillationLoss
from slimbert.methods.distillation.matches import LayerMatch
from slimbert.methods.quantization.embeddings import wrap_word_embeddings
from slimbert.methods.quantization.fake_quant import FakeQuantLinear, TernaryWeightQuantizer, UniformWeightQuantizer
from slimbert.methods.quantization.gate import QuantStepConfig
from slimbert.methods.quantization.lowbit import finish_low_bit, wrap_encoder_linears
from slimbert.methods.quantization.uniform import check_bits
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import config_value
from slimbert.registry import register_method
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig
from slimbert.training.losses import TaskLoss


@dataclass(frozen=True)
class TernaryConfig(QuantStepConfig):
    """TernaryBERT: ternary weights (TWN or loss-aware), 8-bit activations, distillation from the fp32 model.

    ``embedding_bits: 2`` ternarizes the word embeddings too (row-wise TWN, as TernaryBERT does).
    """

    mode: Literal["twn", "lat"] = "twn"
    row_block: int | None = None  # rows sharing one alpha (TernaryBERT: the whole matrix)
    act_bits: int | None = 8
    logits_weight: float = 1.0
    hidden_weight: float = 1.0
    temperature: float = 1.0
    hard_label_weight: float = 0.0
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
        for name in ("logits_weight", "hidden_weight", "hard_label_weight"):
            check_range(name, getattr(self, name), 0, None)
        check_range("temperature", self.temperature, 0, None, low_inclusive=False)
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


@register_method("ternary", TernaryConfig, family="quantization")
def apply_ternary(bundle: ModelBundle, cfg: TernaryConfig, ctx: StepContext) -> ModelBundle:
    """TernaryBERT: ternary encoder weights trained with distillation from the fp32 input model, stored at 2 bits."""
    if ctx.teacher is None:
        raise ConfigError("ternary needs the full-precision input model as its teacher")
    model = bundle.model
    wrappers = wrap_encoder_linears(
        model, lambda view, role, linear: TernaryWeightQuantizer(tuple(linear.weight.shape), cfg.mode, cfg.row_block),
        act_bits=cfg.act_bits, momentum=cfg.momentum)
    embedding = wrap_word_embeddings(bundle, cfg.embedding_bits, embedding_quantizer(cfg.embedding_bits))
    layers = config_value(model, "layers")
    matches = [LayerMatch(teacher=i, student=i, feature="hidden", loss="mse", weight=cfg.hidden_weight)
               for i in range(layers + 1)] if cfg.hidden_weight > 0 else []
    logits_loss = "mse" if ctx.task.is_regression else "kl"
    distill = DistillationLoss(ctx.teacher.model, model, matches, logits_loss=logits_loss, temperature=cfg.temperature,
                               logits_weight=cfg.logits_weight)
    terms = [distill] + ([TaskLoss(ctx.task.is_regression, cfg.hard_label_weight)] if cfg.hard_label_weight > 0 else [])
    callbacks = [SecondMomentCallback(wrappers, cfg.beta2)] if cfg.mode == "lat" else []
    try:
        result = ctx.train(bundle, ctx.settings.train_config(cfg.train), loss_terms=terms, callbacks=callbacks,
                           name="ternary", description=f"TernaryBERT ({cfg.mode}) with distillation")
    finally:
        distill.close()
    ctx.note(f"TernaryBERT trained for {result.steps} steps" + (f"; best dev {result.best_metrics}" if result.best_metrics else ""))

    finish_low_bit(bundle, ctx, cfg, "ternary", wrappers, embedding,
                   "ternary encoder weights packed at 2 bits + one fp32 alpha per group", cfg.onnx_int8,
                   "int8 kernels: ternary weights are exact on the int8 grid, activations at the learned 8-bit "
                   "ranges (no ternary-specific kernel)")
    return bundle
