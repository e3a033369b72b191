"""The accuracy gate every quantization step has, and the config fields all of them share.

A step may set ``max_metric_drop`` (points of the task's main metric, x100, below the recipe's
input model). After quantizing, the step evaluates its model on the dev set; a larger drop fails
with a clear message, or, with ``on_exceed: fallback``, puts encoder layers back to higher
precision one at a time until the drop is within the limit:

1. every layer is tried alone at the higher precision (one evaluation each), and
2. layers are restored cumulatively, the most helpful first, until the drop is small enough
   (at most one more evaluation per layer); if all of them are restored and the drop is still
   too large, the step fails.

So ``fallback`` costs between L + 1 and 2L + 1 dev-set evaluations for L layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from torch import nn

from slimbert.config import MethodConfig, check_range
from slimbert.errors import SlimbertError
from slimbert.methods.quantization.common.uniform import check_bits
from slimbert.models.structure import set_module

if TYPE_CHECKING:
    from slimbert.models.bundle import ModelBundle
    from slimbert.steps.context import StepContext

OnExceed = Literal["error", "fallback"]


@dataclass(frozen=True)
class QuantStepConfig(MethodConfig):
    """Fields of every quantization step: word-embedding bits and the accuracy gate.

    ``embedding_bits``: None keeps the word embeddings fp32; 8 stores them int8 (one scale per
    row); 1..7 bit-packed (per-row scales; the method's own scheme where it has one).
    """

    embedding_bits: int | None = None
    max_metric_drop: float | None = None
    on_exceed: OnExceed = "error"

    def validate(self) -> None:
        if self.embedding_bits is not None:
            check_bits(self.embedding_bits, "embedding_bits")
        if self.max_metric_drop is not None:
            check_range("max_metric_drop", self.max_metric_drop, 0, None)


@dataclass
class LayerFallback:
    """Per encoder layer, the quantized modules and their higher-precision stand-ins, by module path."""

    quantized: dict[int, dict[str, nn.Module]]
    fallback: dict[int, dict[str, nn.Module]]

    def use(self, model: nn.Module, layer: int, higher_precision: bool) -> None:
        for path, module in (self.fallback if higher_precision else self.quantized)[layer].items():
            set_module(model, path, module)

    @property
    def layers(self) -> list[int]:
        return sorted(self.quantized)

    def paths(self, layers: list[int]) -> set[str]:
        """Module paths of the given layers."""
        return {path for layer in layers for path in self.quantized[layer]}


def enforce_accuracy(bundle: "ModelBundle", ctx: "StepContext", cfg: QuantStepConfig, method: str,
                     fallback: LayerFallback | None) -> list[int]:
    """Check the drop of the main metric against ``cfg.max_metric_drop``; return the layers put back
    to higher precision (empty when none had to be)."""
    if cfg.max_metric_drop is None:
        return []
    metric = ctx.task.main_metric
    baseline = ctx.baseline_metrics()[metric]

    def drop() -> float:
        return (baseline - ctx.data.evaluate(bundle.model, bundle.tokenizer)[metric]) * 100

    current = drop()
    limit = cfg.max_metric_drop
    summary = f"{method}: {metric} {baseline * 100:.2f} -> {baseline * 100 - current:.2f} ({-current:+.2f} points"
    if current <= limit:
        ctx.note(f"accuracy gate passed: {summary}; max drop {limit})")
        return []
    if cfg.on_exceed == "error" or fallback is None:
        how = "set on_exceed: fallback to keep the most sensitive layers at higher precision, or " \
            if fallback is not None else ""
        raise SlimbertError(f"accuracy gate failed: {summary}, more than max_metric_drop={limit}). "
                            f"To proceed, {how}raise max_metric_drop, or use more bits / training.")
    alone = {}
    for layer in fallback.layers:
        fallback.use(bundle.model, layer, True)
        alone[layer] = drop()
        fallback.use(bundle.model, layer, False)
    restored: list[int] = []
    for layer in sorted(alone, key=alone.get):
        fallback.use(bundle.model, layer, True)
        restored.append(layer)
        current = alone[layer] if len(restored) == 1 else drop()
        if current <= limit:
            ctx.note(f"accuracy gate: layers {restored} fell back to higher precision; "
                     f"{metric} drop now {current:.2f} points (max {limit}; alone: "
                     + ", ".join(f"layer {k}: {v:.2f}" for k, v in sorted(alone.items())) + ")")
            return restored
    raise SlimbertError(f"accuracy gate failed: {summary}); even with every encoder layer at higher precision the "
                        f"drop is {current:.2f} points > max_metric_drop={limit} (the rest comes from what is not "
                        "per layer, e.g. embeddings). Raise max_metric_drop or quantize less.")
