"""``method: prune-heads``: attention-head pruning by gate-gradient importance (Michel, Levy & Neubig,
2019, "Are Sixteen Heads Really Better than One?").

Each head h gets a gate xi_h on its context vector (a hook on the attention output projection's
input); its importance is I_h = E_x |dL/dxi_h| over a sample of task data, normalized per layer.
The least important heads across all layers are removed in ``rounds`` equal steps, with importance
recomputed (and optionally a short fine-tuning, optionally distilled) after each step. Removed heads
are cut out of the q/k/v rows and output-projection columns, so every layer keeps its own head count.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.context import StepContext
from slimbert.methods.pruning.sampling import sample_batches
from slimbert.methods.pruning.structured import (
    HEADS,
    IterativePruningConfig,
    gate_importance,
    normalize_per_layer,
    prune_iteratively,
    structured_claims,
)
from slimbert.methods.pruning.checks import check_transformer
from slimbert.models.bundle import ModelBundle
from slimbert.registry import register_method


@dataclass(frozen=True)
class HeadPruningConfig(IterativePruningConfig):
    """Remove a fraction of all attention heads, least important first (iterative, with fine-tuning)."""

    fraction: float = 0.4  # of all heads in the model
    normalize: bool = True  # per-layer L2 normalization of importance (Michel et al.)


@register_method("prune-heads", HeadPruningConfig, family="pruning")
def apply_prune_heads(bundle: ModelBundle, cfg: HeadPruningConfig, ctx: StepContext) -> ModelBundle:
    """Iterative head pruning by Michel et al.'s importance, with physical removal."""
    check_transformer(bundle, "head pruning")
    batches = sample_batches(ctx, bundle.tokenizer, cfg.importance_samples)

    def scores(b: ModelBundle):
        importance = gate_importance(b.model, HEADS, batches, ctx.task.is_regression)
        return normalize_per_layer(importance) if cfg.normalize else importance

    prune_iteratively(bundle, ctx, HEADS, fraction=cfg.fraction, rounds=cfg.rounds, scores=scores, train=cfg.train,
                      distill=cfg.distill, name="heads")
    structured_claims(ctx, "attention heads")
    return bundle
