"""Q-BERT: group-wise low-bit weights with Hessian-aware mixed precision (``method: qbert``; Shen et al. 2020).

1. **Sensitivity.** For each encoder layer, the top eigenvalue of the loss Hessian w.r.t. the
   layer's linear weights, by power iteration on Hessian-vector products over
   ``hessian_batches`` training batches (:mod:`~slimbert.methods.quantization.qbert.hessian`);
   Omega = mean + std over batches.
2. **Bits.** Each layer gets one of ``bit_choices`` (2, 3, 4, 8) so that the size-weighted mean
   is at most ``average_bits``, sensitive layers first (or ``bits`` for every layer).
3. **Group-wise quantization.** Symmetric uniform codes with one scale per group: a group per
   attention head for q/k/v (rows) and the attention output (columns), ``ffn_groups`` row groups
   for the FFN matrices.
4. **Fine-tuning** with fake-quantized weights and 8-bit activations (straight-through
   estimator) through the one training loop, then bake to
   :class:`~slimbert.methods.quantization.common.packed.PackedLinear` (bit-packed codes + scales).

What is real: the packed file. No runtime here has 2/3/4-bit kernels, so PyTorch decodes the
weights to fp32; on ONNX Runtime (``onnx_int8``) the low-bit weights are widened to int8 and run
with the learned 8-bit activation ranges on int8 kernels.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch

from slimbert.config import check_range
from slimbert.data.encoding import PadCollator
from slimbert.errors import ConfigError
from slimbert.methods.quantization.common.accuracy_gate import QuantStepConfig
from slimbert.methods.quantization.common.embeddings import wrap_word_embeddings
from slimbert.methods.quantization.common.fake_quant import UniformWeightQuantizer
from slimbert.methods.quantization.common.lowbit import finish_low_bit, wrap_encoder_linears
from slimbert.methods.quantization.common.uniform import check_bits
from slimbert.methods.quantization.qbert.hessian import assign_bits, sensitivity, top_eigenvalue
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import LayerView, layer_views
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig
from slimbert.training.losses import TaskLoss

HESSIAN_SEED = 0


@dataclass(frozen=True)
class QBertConfig(QuantStepConfig):
    """Q-BERT: group-wise weights at 2-8 bits, Hessian-aware mixed precision, quantization-aware fine-tuning."""

    bits: int | None = None  # the same bits for every layer; None: mixed precision from the Hessian
    bit_choices: tuple[int, ...] = (2, 3, 4, 8)
    average_bits: float = 3.0
    ffn_groups: int = 128
    act_bits: int | None = 8
    hessian_batches: int = 2
    hessian_batch_size: int = 16
    power_iterations: int = 20
    momentum: float = 0.9
    onnx_int8: bool = True  # ONNX Runtime: widen the weights to int8, static int8 activations
    train: TrainConfig = TrainConfig(learning_rate=2e-5, epochs=1.0)

    def validate(self) -> None:
        super().validate()
        if self.bits is not None:
            check_bits(self.bits, "bits")
        if not self.bit_choices:
            raise ConfigError("bit_choices must list at least one bit width, e.g. [2, 3, 4, 8]")
        for b in self.bit_choices:
            check_bits(b, "every entry of bit_choices")
        check_range("average_bits", self.average_bits, min(self.bit_choices), max(self.bit_choices))
        if self.act_bits is not None:
            check_bits(self.act_bits, "act_bits")
        for name in ("ffn_groups", "hessian_batches", "hessian_batch_size", "power_iterations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_range("momentum", self.momentum, 0, 1, high_inclusive=False)
        self.train.validate()


def qbert_blocks(view: LayerView, role: str, ffn_groups: int) -> tuple[int | None, int | None]:
    """(row block, column block): one group per head for q/k/v (rows) and the attention output
    (columns), ``ffn_groups`` blocks of rows for the FFN matrices."""
    if role in ("query", "key", "value"):
        return view.head_size, None
    if role == "attn_out":
        return None, view.head_size
    rows = view.module(role).out_features
    return -(-rows // min(ffn_groups, rows)), None


def layer_eigenvalues(bundle: ModelBundle, ctx: StepContext, cfg: QBertConfig) -> dict[int, list[float]]:
    """Top Hessian eigenvalue of each encoder layer's linear weights, per training batch."""
    dataset = ctx.data.train_set(bundle.tokenizer)
    if len(dataset) == 0:
        raise ConfigError("Q-BERT's Hessian needs training examples, but the training split is empty")
    model = copy.deepcopy(bundle.model).eval()  # eval: no dropout noise in the curvature
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # fused attention kernels may lack double backward
    params = {v.index: [m.weight for m in v.linears().values()] for v in layer_views(model)}
    flat = [p for ps in params.values() for p in ps]
    loss_term = TaskLoss(ctx.task.is_regression)
    collate = PadCollator(bundle.tokenizer.pad_token_id or 0, ctx.task.is_regression)
    n = min(len(dataset), cfg.hessian_batches * cfg.hessian_batch_size)
    order = random.Random(HESSIAN_SEED).sample(range(len(dataset)), n)
    eigenvalues: dict[int, list[float]] = {layer: [] for layer in params}
    for b, start in enumerate(range(0, n, cfg.hessian_batch_size)):
        batch = collate([dataset[i] for i in order[start:start + cfg.hessian_batch_size]])
        outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        grads = torch.autograd.grad(loss_term(batch, outputs, model), flat, create_graph=True)
        offset = 0
        for layer, ps in params.items():
            layer_grads = grads[offset:offset + len(ps)]
            offset += len(ps)
            eigenvalues[layer].append(top_eigenvalue(layer_grads, ps, cfg.power_iterations, seed=HESSIAN_SEED + b))
    return eigenvalues


def choose_bits(bundle: ModelBundle, ctx: StepContext, cfg: QBertConfig) -> dict[int, int]:
    views = layer_views(bundle.model)
    if cfg.bits is not None:
        return {v.index: cfg.bits for v in views}
    eigenvalues = layer_eigenvalues(bundle, ctx, cfg)
    omega = {layer: sensitivity(e) for layer, e in eigenvalues.items()}
    sizes = {v.index: sum(m.in_features * m.out_features for m in v.linears().values()) for v in views}
    bits = assign_bits(omega, sizes, cfg.bit_choices, cfg.average_bits)
    ctx.note("Q-BERT Hessian sensitivity (mean+std of top eigenvalues) -> bits: "
             + ", ".join(f"layer {k}: {omega[k]:.3g} -> {bits[k]}" for k in sorted(bits)))
    return bits


@register_method("qbert", QBertConfig, family="quantization", accepts_distill=True, quantizes=True, fallback="layers")
def apply_qbert(bundle: ModelBundle, cfg: QBertConfig, ctx: StepContext) -> ModelBundle:
    """Q-BERT group-wise (mixed-precision) low-bit weights, fine-tuned with fake quantization, stored packed."""
    model = bundle.model
    bits = choose_bits(bundle, ctx, cfg)
    wrappers = wrap_encoder_linears(
        model, lambda view, role, linear: UniformWeightQuantizer(bits[view.index], *qbert_blocks(view, role, cfg.ffn_groups)),
        act_bits=cfg.act_bits, momentum=cfg.momentum)
    embedding = wrap_word_embeddings(bundle, cfg.embedding_bits)
    result = ctx.train(bundle, cfg.train, name="qbert",
                       description=f"Q-BERT fine-tuning (weights {sorted(set(bits.values()))} bits)")
    ctx.note(f"Q-BERT fine-tuned for {result.summary()}")

    finish_low_bit(bundle, ctx, cfg, "qbert", wrappers, embedding,
                   f"encoder linears bit-packed at {sorted(set(bits.values()))} bits with per-group scales",
                   cfg.onnx_int8, "int8 kernels (weights widened from their low-bit codes to int8, activations at "
                                  "the learned 8-bit ranges), not low-bit kernels")
    return bundle
