"""``method: prune-ffn``: remove FFN (intermediate) neurons, so each layer ends with its own width.

Importance of neuron j, whose activation a_j feeds column j of the FFN output weight W_out (d, I):

* ``taylor``: |sum over tokens of a_j * dL/da_j| over a sample of task data (gradient x activation;
  the first-order Taylor estimate of the loss change when a_j is zeroed, Molchanov et al. 2017);
* ``magnitude``: ||W_in[j, :]||_2 * ||W_out[:, j]||_2, no data needed.

With ``scope: global`` scores are normalized per layer and ranked across layers (layers end with
different widths); ``scope: layer`` removes the same fraction from every layer. Removal is
iterative with optional (distilled) fine-tuning between rounds, like head pruning.

Accuracy-gate fallback: remove 0.1 less of the neurons and run the step again, until the gate passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import less
from slimbert.steps.sampling import sample_batches
from slimbert.methods.pruning.common.structured import (
    NEURONS,
    IterativePruningConfig,
    gate_importance,
    normalize_per_layer,
    prune_iteratively,
    removal_target,
    select_lowest,
    select_lowest_per_layer,
    structured_claims,
)
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import layer_views
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method


def magnitude_importance(model) -> list[torch.Tensor]:
    """Per layer (I,): ||W_in[j, :]|| * ||W_out[:, j]|| for every neuron j."""
    return [(v.ffn_in.weight.detach().norm(dim=1) * v.ffn_out.weight.detach().norm(dim=0)).cpu()
            for v in layer_views(model)]


@dataclass(frozen=True)
class FfnPruningConfig(IterativePruningConfig):
    """Remove a fraction of the FFN neurons (Taylor or magnitude importance), layer-wise or across layers."""

    importance: Literal["taylor", "magnitude"] = "taylor"
    scope: Literal["global", "layer"] = "global"

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "FFN pruning")
        return model.remove_neurons(removal_target("neuron", model.intermediate, self.fraction))


@register_method("prune-ffn", FfnPruningConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: less(cfg, "fraction"))
def apply_prune_ffn(bundle: ModelBundle, cfg: FfnPruningConfig, ctx: StepContext) -> ModelBundle:
    """FFN neuron pruning (gradient x activation or magnitude) with physical removal."""
    check_transformer(bundle, "FFN pruning")
    batches = sample_batches(ctx, bundle.tokenizer, cfg.importance_samples) if cfg.importance == "taylor" else []

    def scores(b: ModelBundle) -> list[torch.Tensor]:
        if cfg.importance == "magnitude":
            return normalize_per_layer(magnitude_importance(b.model))
        return normalize_per_layer(gate_importance(b.model, NEURONS, batches, ctx.task.is_regression))

    prune_iteratively(bundle, ctx, NEURONS, fraction=cfg.fraction, rounds=cfg.rounds, scores=scores, train=cfg.train,
                      name="ffn",
                      choose=select_lowest if cfg.scope == "global" else select_lowest_per_layer)
    structured_claims(ctx, "FFN neurons")
    return bundle

