"""The per-layer fallback of the quantization methods' accuracy gate, and the fields they all share.

The gate itself is a step option (``max_metric_drop``, ``on_exceed``, ``gate_against``; see
:mod:`slimbert.steps.gate`), checked on the runtime that will serve the model. When it fails and the
step says ``on_exceed: fallback``, the int8 and low-bit methods put encoder layers back to higher
precision one at a time until the drop is within the limit:

1. every layer is tried alone at the higher precision (one evaluation each), and
2. layers are restored cumulatively, the most helpful first, until the drop is small enough
   (at most one more evaluation per layer); if all of them are restored and the drop is still
   too large, the step fails.

So ``fallback`` costs between L + 1 and 2L + 1 dev-set evaluations for L layers, each on the gate
runtime (an ONNX Runtime or OpenVINO export of the model as it stands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from torch import nn

from slimbert.config import MethodConfig
from slimbert.methods.quantization.common.uniform import check_bits
from slimbert.models.structure import set_module

if TYPE_CHECKING:
    from slimbert.models.bundle import ModelBundle
    from slimbert.steps.context import StepContext

@dataclass(frozen=True)
class QuantStepConfig(MethodConfig):
    """Fields of every quantization step: the word embeddings' bits.

    ``embedding_bits``: None keeps the word embeddings fp32; 8 stores them int8 (one scale per
    row); 1..7 bit-packed (per-row scales; the method's own scheme where it has one).
    """

    embedding_bits: int | None = None

    def validate(self) -> None:
        if self.embedding_bits is not None:
            check_bits(self.embedding_bits, "embedding_bits")


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


def enforce_accuracy(bundle: "ModelBundle", ctx: "StepContext", method: str, fallback: LayerFallback | None,
                     transform_for: Callable[[set[str]], dict | None] | None = None) -> list[int]:
    """Check the step's accuracy gate, if it has one; with ``on_exceed: fallback``, restore the most
    sensitive layers to higher precision until it passes. Return the layers restored (empty when none).

    ``transform_for(paths kept at higher precision)`` gives the ONNX transform the model has in that state
    (evaluations on ONNX Runtime or OpenVINO export the model as it would be saved).
    """
    gate = ctx.gate
    if gate is None:
        return []
    base = list(bundle.onnx_transforms)

    def check(restored: list[int], note: str | None = None):
        if transform_for is not None:
            extra = transform_for(fallback.paths(restored) if fallback else set())
            bundle.onnx_transforms = base + ([extra] if extra else [])
        try:
            return ctx.check_gate(bundle, note)
        finally:
            bundle.onnx_transforms = base

    outcome = check([])
    if outcome.passed:
        ctx.note(f"accuracy gate passed on {outcome.runtime}: {method}: {outcome.metric} {outcome.reference * 100:.2f} "
                 f"-> {outcome.value * 100:.2f} ({-outcome.drop:+.2f} points; max drop {gate.max_metric_drop})")
        return []
    if gate.on_exceed == "error" or fallback is None:
        how = ("set on_exceed: fallback to keep the most sensitive layers at higher precision, or "
               if fallback is not None else "")
        raise ctx.gate_error(outcome, f"To proceed, {how}raise max_metric_drop, or use more bits / training.")
    alone = {}
    for layer in fallback.layers:
        fallback.use(bundle.model, layer, True)
        alone[layer] = check([layer]).drop
        fallback.use(bundle.model, layer, False)
    restored: list[int] = []
    for layer in sorted(alone, key=alone.get):
        fallback.use(bundle.model, layer, True)
        restored.append(layer)
        outcome = check(restored, f"layers {restored} at higher precision")
        if outcome.passed:
            ctx.note(f"accuracy gate: layers {restored} fell back to higher precision; {outcome.metric} drop on "
                     f"{outcome.runtime} now {outcome.drop:.2f} points (max {gate.max_metric_drop}; alone: "
                     + ", ".join(f"layer {k}: {v:.2f}" for k, v in sorted(alone.items())) + ")")
            return restored
    raise ctx.gate_error(outcome, "Even with every encoder layer at higher precision the gate fails (the rest comes "
                                  "from what is not per layer, e.g. embeddings). Raise max_metric_drop or quantize less.")
