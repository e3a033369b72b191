"""``method: early-exit``: exit heads after every encoder layer, trained through the one loop, and the exit
criterion the runner applies at inference (survey section 3.5).

Training (``training``):

* ``two-stage`` (DeeBERT, Xin et al. ACL 2020): the input model is the fine-tuned first stage; its backbone and
  classifier are frozen and the heads learn the labels;
* ``joint`` (PABEE, Zhou et al. NeurIPS 2020; BERxiT): backbone and all heads train on a loss weighting head i
  by i + 1 (the heads at ``head_learning_rate``, the backbone at the step's learning rate);
* ``self-distill`` (FastBERT, Liu et al. ACL 2020): backbone frozen, every head learns the final classifier's
  distribution (no labels needed).

Inference (``criterion``): ``entropy`` (normalised by log C; exit below ``threshold``), ``confidence`` (top
probability at least ``threshold``) or ``patience`` (``patience`` agreeing heads in a row). Examples that exit
leave the batch (:mod:`slimbert.models.adaptive.runner`), so the speed-up holds at batch 32 too. The exit heads
are initialised from the model's own pooler and classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.methods.dynamic.common.exit_losses import ExitHeadsLearningRate, ExitHeadsLoss
from slimbert.model_shape import ModelShape
from slimbert.models.adaptive.criteria import CRITERIA, ExitCriterion
from slimbert.models.adaptive.exit_heads import EXIT_HEADS_ATTR, POOLING, ExitHeads
from slimbert.models.adaptive.runner import AdaptiveSettings
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import config_value, head_linears
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig

TRAINING = ("two-stage", "joint", "self-distill")


@dataclass(frozen=True)
class EarlyExitConfig(MethodConfig):
    """Early exit: a classifier after every layer (DeeBERT / PABEE / FastBERT training) and an exit criterion."""

    training: str = "two-stage"
    criterion: str = "entropy"
    threshold: float = 0.3
    patience: int = 2
    min_exit_layer: int = 0
    pooling: str = "mean"  # what an exit head reads: the mean of the real tokens, or [CLS] (DeeBERT)
    head_learning_rate: float = 5e-4  # joint training: the heads' own learning rate (the backbone uses train's)
    train: TrainConfig = TrainConfig(learning_rate=5e-4, epochs=1.0)

    def validate(self) -> None:
        if self.training not in TRAINING:
            raise ConfigError(f"training {self.training!r} is unknown; choose one of {', '.join(TRAINING)}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"criterion {self.criterion!r} is unknown; choose one of {', '.join(CRITERIA)}")
        self.criterion_config().validate()
        if self.pooling not in POOLING:
            raise ConfigError(f"pooling {self.pooling!r} is unknown; choose one of {', '.join(POOLING)}")
        if self.min_exit_layer < 0:
            raise ConfigError(f"min_exit_layer must be >= 0, got {self.min_exit_layer}")
        self.train.validate()

    def criterion_config(self) -> ExitCriterion:
        return ExitCriterion(self.criterion, self.threshold, self.patience)

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if not model.is_transformer:
            raise ConfigError("early exit needs a Transformer encoder (exit heads read each layer's [CLS])")
        if model.layers < 2:
            raise ConfigError(f"early exit needs at least 2 encoder layers, the model has {model.layers}")
        if self.min_exit_layer >= model.layers:
            raise ConfigError(f"min_exit_layer {self.min_exit_layer} must be below the layer count {model.layers}")
        return replace(model, exit_heads=True)


def fallback(cfg: EarlyExitConfig) -> EarlyExitConfig | None:
    """A stricter criterion (fewer, later exits): entropy threshold halved, confidence threshold halfway to 1,
    patience + 1; None once an entropy threshold is below 0.01."""
    if cfg.criterion == "entropy":
        return replace(cfg, threshold=cfg.threshold / 2) if cfg.threshold >= 0.01 else None
    if cfg.criterion == "confidence":
        return replace(cfg, threshold=(1 + cfg.threshold) / 2) if cfg.threshold < 0.999 else None
    return replace(cfg, patience=cfg.patience + 1)


@register_method("early-exit", EarlyExitConfig, family="dynamic-inference", after_factorization=True,
                 after_sharing=True, fallback=fallback)
def apply_early_exit(bundle: ModelBundle, cfg: EarlyExitConfig, ctx: StepContext) -> ModelBundle:
    """Exit heads after every layer, trained (two-stage, joint or self-distilled), and an exit criterion."""
    if ctx.task.is_regression:
        raise ConfigError(f"early exit decides from class probabilities; {ctx.task.name} is a regression task")
    model = bundle.model
    layers = config_value(model, "layers")
    heads = ExitHeads(config_value(model, "hidden"), model.config.num_labels, layers - 1, cfg.pooling)
    heads.init_from(*head_linears(model))
    setattr(model, EXIT_HEADS_ATTR, heads)

    frozen = cfg.training != "joint"
    trainable = {id(p) for p in heads.parameters()}
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    if frozen:
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
    mode = {"two-stage": "labels", "joint": "joint", "self-distill": "self-distill"}[cfg.training]
    try:
        # Frozen backbone: the model's own metric cannot move, so there is nothing to select on (keep the last).
        callbacks = [] if frozen else [ExitHeadsLearningRate(cfg.head_learning_rate)]
        ctx.train(bundle, cfg.train, loss_terms=[ExitHeadsLoss(mode)], callbacks=callbacks, name="early-exit",
                  evaluate=not frozen,
                  description=f"early exit: training {layers - 1} exit heads ({cfg.training})")
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(saved.get(n, True))
    settings = AdaptiveSettings.from_dict(bundle.adaptive)
    bundle.adaptive = replace(settings, exit=cfg.criterion_config(), min_exit_layer=cfg.min_exit_layer).to_dict()
    ctx.note(f"early exit: {layers - 1} exit heads ({cfg.training}); criterion {cfg.criterion} "
             + (f"patience {cfg.patience}" if cfg.criterion == "patience" else f"threshold {cfg.threshold}"))
    ctx.claim("speed", "pytorch", True, "examples leave the batch at the first layer whose exit criterion holds "
              "(the average depth depends on the inputs: `slimbert bench adaptive` measures it on real sentences)")
    return bundle
