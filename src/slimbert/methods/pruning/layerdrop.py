"""``method: layerdrop``: structured dropout of whole layers while fine-tuning (Fan, Grave & Joulin,
2020, "Reducing Transformer Depth on Demand with Structured Dropout"), then optional removal.

During training every encoder layer is skipped (its output replaced by its input) with probability
``p`` at each optimizer step, so the network learns not to depend on any single layer; afterwards
``num_drop`` layers can be removed with less loss, by one of the drop-layers strategies (the paper's
"every other" pruning is ``strategy: alternate``).

Skipping is a forward hook on each layer that returns the layer's input: no forked forward, and no
module-structure change while training (resume works). The skipped layer still runs and its result
is discarded, which wastes some training compute but keeps the model code untouched. The layers
skipped at a step are a pure function of (seed, step), so a resumed run skips the same ones.

Accuracy-gate fallback: remove one layer fewer after LayerDrop training and run the step again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimbert.config import MethodConfig, check_range
from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import fewer
from slimbert.methods.pruning.common.fine_tuning import train_pruned
from slimbert.methods.pruning.common.layer_dropping import Strategy, drop_layers, planned_drop
from slimbert.methods.pruning.common.structured import structured_claims
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import encoder_layers
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.callbacks import Callback
from slimbert.training.config import TrainConfig
from slimbert.training.state import TrainState


class LayerSkipper:
    """Forward hooks making the encoder layers in ``skipped`` return their input hidden states.

    ``training_only``: skip only while the model is in training mode (LayerDrop); otherwise always
    (a "masked" model with layers removed, equal to :func:`~slimbert.models.surgery.keep_layers`).
    """

    def __init__(self, model: nn.Module, training_only: bool = True):
        self.training_only = training_only
        self.skipped: set[int] = set()
        self._handles = [layer.register_forward_hook(self._hook(i), with_kwargs=True)
                         for i, layer in enumerate(encoder_layers(model))]

    def _hook(self, index: int):
        def hook(module, args, kwargs, output):
            if index in self.skipped and (module.training or not self.training_only):
                return args[0] if args else kwargs["hidden_states"]  # (B, T, d): the layer's input
            return output

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class LayerDrop(Callback):
    """Chooses the layers to skip before every optimizer step (each with probability ``p``, never all)."""

    def __init__(self, p: float, seed: int):
        self.p = p
        self.seed = seed
        self.skipper: LayerSkipper | None = None

    def on_train_begin(self, state: TrainState, model: nn.Module) -> None:
        self.skipper = LayerSkipper(model, training_only=True)

    def on_step_begin(self, state: TrainState, model: nn.Module) -> None:
        n = len(encoder_layers(model))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + state.global_step)
        drop = (torch.rand(n, generator=gen) < self.p).nonzero().flatten().tolist()
        self.skipper.skipped = set(drop if len(drop) < n else drop[:-1])

    def on_train_end(self, state: TrainState, model: nn.Module) -> None:
        self.skipper.remove()


@dataclass(frozen=True)
class LayerDropConfig(MethodConfig):
    """Fine-tune with LayerDrop, then optionally remove layers (which then hurts less)."""

    p: float = 0.2
    num_drop: int = 0  # layers removed after training (0: keep all, the model is only made robust)
    strategy: Strategy = "alternate"
    contribution_samples: int = 256
    train: TrainConfig = TrainConfig(learning_rate=5e-5, epochs=1.0)

    def validate(self) -> None:
        check_range("p", self.p, 0, 1, low_inclusive=False, high_inclusive=False)
        if self.num_drop < 0:
            raise ConfigError(f"num_drop must be >= 0, got {self.num_drop}")
        self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "LayerDrop")
        return planned_drop(model, self.strategy, self.num_drop) if self.num_drop else model


@register_method("layerdrop", LayerDropConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: fewer(cfg, "num_drop", floor=-1))
def apply_layerdrop(bundle: ModelBundle, cfg: LayerDropConfig, ctx: StepContext) -> ModelBundle:
    """LayerDrop fine-tuning (structured layer dropout), then optional removal of layers."""
    check_transformer(bundle, "LayerDrop")
    train_cfg = ctx.settings.train_config(cfg.train)
    train_pruned(bundle, ctx, cfg.train, callbacks=[LayerDrop(cfg.p, train_cfg.seed)],
                 name="layerdrop", description=f"fine-tuning with LayerDrop p={cfg.p}")
    if cfg.num_drop:
        drop_layers(bundle, ctx, cfg.strategy, cfg.num_drop, cfg.contribution_samples)
        structured_claims(ctx, "encoder layers")
    return bundle
