"""``method: prune-heads``: attention-head pruning by gate-gradient importance (Michel, Levy & Neubig,
2019, "Are Sixteen Heads Really Better than One?").

Each head h gets a gate xi_h on its context vector (a hook on the attention output projection's
input); its importance is I_h = E_x |dL/dxi_h| over a sample of task data, normalized per layer.
The least important heads across all layers are removed in ``rounds`` equal steps, with importance
recomputed (and optionally a short fine-tuning, optionally distilled) after each step. Removed heads
are cut out of the q/k/v rows and output-projection columns, so every layer keeps its own head count.

Accuracy-gate fallback (``on_exceed: fallback``): remove 0.1 less of the heads and run the step again
(importance and every round of fine-tuning), until the gate passes or no heads would be removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import less
from slimbert.steps.sampling import sample_batches
from slimbert.methods.pruning.common.structured import (
    HEADS,
    IterativePruningConfig,
    gate_importance,
    normalize_per_layer,
    prune_iteratively,
    removal_target,
    structured_claims,
)
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method


@dataclass(frozen=True)
class HeadPruningConfig(IterativePruningConfig):
    """Remove a fraction of all attention heads, least important first (iterative, with fine-tuning)."""

    fraction: float = 0.4  # of all heads in the model
    normalize: bool = True  # per-layer L2 normalization of importance (Michel et al.)

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "head pruning")
        return model.remove_heads(removal_target("head", model.heads, self.fraction))


@register_method("prune-heads", HeadPruningConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: less(cfg, "fraction"))
def apply_prune_heads(bundle: ModelBundle, cfg: HeadPruningConfig, ctx: StepContext) -> ModelBundle:
    """Iterative head pruning by Michel et al.'s importance, with physical removal."""
    check_transformer(bundle, "head pruning")
    batches = sample_batches(ctx, bundle.tokenizer, cfg.importance_samples)

    def scores(b: ModelBundle):
        importance = gate_importance(b.model, HEADS, batches, ctx.task.is_regression)
        return normalize_per_layer(importance) if cfg.normalize else importance

    prune_iteratively(bundle, ctx, HEADS, fraction=cfg.fraction, rounds=cfg.rounds, scores=scores, train=cfg.train,
                      name="heads")
    structured_claims(ctx, "attention heads")
    return bundle
