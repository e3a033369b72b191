"""``method: token-dropping``: PoWER-BERT's progressive word-vector elimination (Goyal et al., ICML 2020).

After encoder layer i each example keeps the ``retention[i]`` fraction of its real tokens that received the
most attention in that layer (:mod:`slimbert.models.adaptive.token_dropping`); the others are gathered out,
so later layers run on shorter sequences. [CLS] is always kept. The schedule is either given per layer or
linear from 1 down to ``final_retention`` after the second-to-last layer. With ``train`` set, the model is then
fine-tuned on the path it will run (the runner drops the tokens during training too; the step's ``distill:``
block, logits only, applies), PoWER-BERT's re-training; the paper's learned soft-extract stage, which chooses the
retention schedule, is not implemented: the schedule is given.

Accuracy-gate fallback: every fraction moved halfway to 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.methods.dynamic.common.adaptive_training import AdaptiveForward
from slimbert.model_shape import ModelShape
from slimbert.models.adaptive.runner import AdaptiveSettings
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import config_value
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


@dataclass(frozen=True)
class TokenDroppingConfig(MethodConfig):
    """PoWER-BERT token dropping: keep each layer's most attended tokens (a retention schedule)."""

    retention: tuple[float, ...] | None = None  # fraction kept after layer i; null: linear to final_retention
    final_retention: float = 0.5
    train: TrainConfig | None = None  # fine-tuning with the schedule; null: inference only

    def validate(self) -> None:
        values = self.retention if self.retention is not None else (self.final_retention,)
        for r in values:
            if not 0.0 < r <= 1.0:
                raise ConfigError(f"retention is the fraction of each example's tokens kept, in (0, 1]; got {r} "
                                  "(a value above 1 would keep more tokens than the sequence has)")
        if self.retention is not None:
            AdaptiveSettings(retention=self.retention).validate()
        if self.train is not None:
            self.train.validate()

    def schedule(self, layers: int) -> tuple[float, ...]:
        if self.retention is not None:
            return self.retention
        steps = layers - 1  # nothing to drop after the last layer
        return tuple(round(1.0 - (1.0 - self.final_retention) * (i + 1) / steps, 6) for i in range(steps))

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if not model.is_transformer:
            raise ConfigError("token dropping needs a Transformer encoder")
        if self.train is not None and (model.compressed_linears or model.factored_linears or model.shared_layers):
            raise ConfigError("token-dropping with train fine-tunes the encoder: put it before quantization, "
                              "factorization and sharing (without train it may follow them)")
        if self.retention is not None and len(self.retention) > model.layers - 1:
            raise ConfigError(f"retention has {len(self.retention)} entries; a {model.layers}-layer model drops "
                              f"tokens after at most {model.layers - 1} layers")
        return model


def fallback(cfg: TokenDroppingConfig) -> TokenDroppingConfig | None:
    current = cfg.retention if cfg.retention is not None else (cfg.final_retention,)
    if min(current) >= 0.99:
        return None
    if cfg.retention is not None:
        return replace(cfg, retention=tuple(round((1 + r) / 2, 6) for r in cfg.retention))
    return replace(cfg, final_retention=round((1 + cfg.final_retention) / 2, 6))


@register_method("token-dropping", TokenDroppingConfig, family="dynamic-inference", accepts_distill=True,
                 after_quantization=True, after_factorization=True, after_sharing=True, after_exit_heads=True,
                 fallback=fallback)
def apply_token_dropping(bundle: ModelBundle, cfg: TokenDroppingConfig, ctx: StepContext) -> ModelBundle:
    """PoWER-BERT: after each layer keep each example's most attended tokens (a retention schedule)."""
    schedule = cfg.schedule(config_value(bundle.model, "layers"))
    settings = AdaptiveSettings.from_dict(bundle.adaptive)
    settings = replace(settings, retention=schedule).validate(config_value(bundle.model, "layers"))
    if cfg.train is not None:
        # Train on the path the model will run: only the schedule, no exits (their heads are not trained here).
        wrapper = AdaptiveForward(bundle.model, replace(settings, exit=None))
        ctx.train(dataclasses.replace(bundle, model=wrapper), cfg.train, name="token-dropping",
                  description="fine-tuning with the token-dropping schedule")
        bundle.model = wrapper.bake()
    bundle.adaptive = settings.to_dict()
    ctx.note("token dropping: fraction of each example's tokens kept after each layer "
             + ", ".join(f"{r:.2f}" for r in schedule))
    ctx.claim("speed", "pytorch", True, "later layers run on fewer tokens (gathered out, not masked); the gain "
              "depends on the inputs: `slimbert bench adaptive` measures it on real sentences")
    return bundle
