"""``method: drop-layers``: remove whole encoder layers (Sajjad et al., 2020/2023, "On the Effect of
Dropping Layers of Pre-trained Transformer Models", a.k.a. Poor Man's BERT), then fine-tune.

Strategies for dropping k of L layers (0-based indices):

* ``top``: the last k layers (the paper's best strategy without extra cost);
* ``bottom``: the first k;
* ``alternate``: odd-alternate dropping, every other layer from the top keeping the last one
  (layers 11, 9, 7, 5 of 12, 1-based, for k = 4); ``alternate-even`` starts at the last layer
  (12, 10, 8, 6);
* ``symmetric``: k layers from the middle, keeping the bottom and top ones;
* ``contribution``: the k layers that change their input least, by the mean cosine similarity
  between a layer's input and output hidden states on a sample of task data.

Accuracy-gate fallback: drop one layer fewer and run the step again (fine-tuning included), until the gate
passes or no layer would be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import fewer
from slimbert.methods.pruning.common.fine_tuning import train_pruned
from slimbert.methods.pruning.common.layer_dropping import Strategy, drop_layers, planned_drop
from slimbert.methods.pruning.common.structured import structured_claims
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class DropLayersConfig(MethodConfig):
    """Drop whole encoder layers by a Poor Man's BERT strategy, then (optionally) fine-tune."""

    strategy: Strategy = "top"
    num_drop: int = 2
    contribution_samples: int = 256
    train: TrainConfig | None = TrainConfig(learning_rate=5e-5, epochs=1.0)  # after dropping; null: no training

    def validate(self) -> None:
        if self.num_drop < 1 or self.contribution_samples < 1:
            raise ConfigError(f"num_drop and contribution_samples must be >= 1, got {self.num_drop} and "
                              f"{self.contribution_samples}")
        if self.train is not None:
            self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "layer dropping")
        return planned_drop(model, self.strategy, self.num_drop)


@register_method("drop-layers", DropLayersConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: fewer(cfg, "num_drop"))
def apply_drop_layers(bundle: ModelBundle, cfg: DropLayersConfig, ctx: StepContext) -> ModelBundle:
    """Poor Man's BERT: drop layers (top, bottom, alternate, symmetric, by contribution), then fine-tune."""
    check_transformer(bundle, "layer dropping")
    drop_layers(bundle, ctx, cfg.strategy, cfg.num_drop, cfg.contribution_samples)
    if cfg.train is not None:
        train_pruned(bundle, ctx, cfg.train, name="drop-layers",
                     description=f"fine-tuning after dropping {cfg.num_drop} layers ({cfg.strategy})")
    structured_claims(ctx, "encoder layers")
    return bundle
