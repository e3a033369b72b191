"""``method: distill``: train the current model (the student) to imitate a teacher.

The teacher is the recipe's input model unless ``teacher`` names another. The loss is
``hard_label_weight * task loss + logits_weight * logits loss + sum(match weights * match losses)``
(Hinton et al. 2015; DistilBERT; TinyBERT; PKD; MiniLM), trained by the one training loop, with
optional data augmentation (TinyBERT; Tang et al.). TinyBERT's two stages are two ``distill``
steps: intermediate layers first (``logits_loss: none``), then the prediction layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slimbert.config import MethodConfig, check_range
from slimbert.data.encoding import encode
from slimbert.errors import ConfigError
from slimbert.methods.distillation.distill.augment import AugmentConfig, augment_examples
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.loading import load_model
from slimbert.models.shape import shape_of
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig
from slimbert.training.distillation.loss_term import DistillationLoss
from slimbert.training.distillation.matches import PRESETS, Feature, LayerMatch, preset_matches
from slimbert.training.losses import TaskLoss


@dataclass(frozen=True)
class DistillConfig(MethodConfig):
    """Knowledge distillation: logits, hidden states, attention maps and MiniLM relations as layer matches."""

    teacher: str | None = None  # default: the recipe's input model
    logits_loss: Literal["kl", "mse", "none"] = "kl"
    temperature: float = 2.0
    logits_weight: float = 1.0
    hard_label_weight: float = 0.0
    matches: tuple[LayerMatch, ...] = ()
    preset: str | None = None  # uniform | pkd-skip | pkd-last | last
    preset_feature: Feature = "hidden"
    preset_loss: str | None = None
    preset_weight: float = 1.0
    relation_heads: int | None = None  # MiniLM relation heads (default: the teacher's head count)
    augmentation: AugmentConfig | None = None
    evaluate: bool = True  # false for intermediate-only stages, whose classifier is not trained yet
    train: TrainConfig = TrainConfig(learning_rate=1e-4, epochs=3.0)

    def validate(self) -> None:
        check_range("temperature", self.temperature, 0, None, low_inclusive=False)
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESETS)}")
        if self.logits_loss == "none" and not self.matches and self.preset is None:
            raise ConfigError("nothing to distill: set logits_loss, matches or a preset")
        self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if self.teacher is None:  # another teacher's shape is only known once it is loaded
            check_matches(self, teacher, model)
        return model


def resolve_matches(cfg: DistillConfig, teacher: ModelShape, student: ModelShape) -> list[LayerMatch]:
    """The explicit matches plus the preset's, validated against both models' depths."""
    if (cfg.matches or cfg.preset) and not student.is_transformer:
        raise ConfigError(f"layer matches need a Transformer student; a {student.model_type} student can only "
                          "learn from the logits (set matches: [] and no preset)")
    matches = list(cfg.matches)
    if cfg.preset is not None:
        matches += preset_matches(cfg.preset, teacher.layers, student.layers, cfg.preset_feature, cfg.preset_loss,
                                  cfg.preset_weight)
    for m in matches:
        m.check_layers(teacher.layers, student.layers)
    return matches


def check_relation_heads(heads: int, teacher: ModelShape, student: ModelShape) -> None:
    """Both models' projection widths (all heads together) must divide into ``heads`` relation heads."""
    for who, shape in (("teacher", teacher), ("student", student)):
        for layer, layer_heads in enumerate(shape.heads):
            width = layer_heads * shape.head_size
            if width % heads:
                raise ConfigError(f"relation_heads={heads} does not divide the {who}'s attention width {width} "
                                  f"(layer {layer + 1}); choose a common divisor")


def check_matches(cfg: DistillConfig, teacher: ModelShape, student: ModelShape) -> list[LayerMatch]:
    """The resolved layer matches, with MiniLM's relation heads checked against both models' widths."""
    matches = resolve_matches(cfg, teacher, student)
    if any(m.feature.endswith("relation") for m in matches):
        check_relation_heads(cfg.relation_heads or teacher.hidden // teacher.head_size, teacher, student)
    return matches


def _teacher(cfg: DistillConfig, ctx: StepContext) -> ModelBundle:
    if cfg.teacher is None:
        if ctx.teacher is None:
            raise ConfigError("distill needs a teacher: the recipe's input model or `teacher: path`")
        return ctx.teacher
    return load_model(cfg.teacher, ctx.task)


@register_method("distill", DistillConfig, family="distillation", after_factorization=True, after_sharing=True)
def apply_distill(bundle: ModelBundle, cfg: DistillConfig, ctx: StepContext) -> ModelBundle:
    """Train the current model against a teacher with the configured losses and layer matches."""
    teacher = _teacher(cfg, ctx)
    if teacher.tokenizer.get_vocab() != bundle.tokenizer.get_vocab():
        raise ConfigError("teacher and student must share one tokenizer vocabulary")
    matches = check_matches(cfg, shape_of(teacher.model), shape_of(bundle.model))
    logits_loss = cfg.logits_loss
    if ctx.task.is_regression and logits_loss == "kl":
        logits_loss = "mse"  # a regression output has no distribution to soften
        ctx.note("regression task: logits distilled with MSE instead of KL")
    term = DistillationLoss(teacher.model, bundle.model, matches, logits_loss=logits_loss, temperature=cfg.temperature,
                            logits_weight=cfg.logits_weight, relation_heads=cfg.relation_heads)
    terms = [term]
    if cfg.hard_label_weight > 0:
        terms.append(TaskLoss(ctx.task.is_regression, weight=cfg.hard_label_weight))
    train_set = None
    if cfg.augmentation is not None:
        originals = ctx.data.train_examples()
        extra = augment_examples(originals, bundle.tokenizer, teacher.model, cfg.augmentation,
                                 regression=ctx.task.is_regression, max_seq_len=ctx.settings.seq_len)
        train_set = encode(originals + extra, bundle.tokenizer, ctx.settings.seq_len)
        ctx.note(f"distillation data: {len(originals)} examples + {len(extra)} augmented, labelled by the teacher")
    train_cfg = ctx.settings.train_config(cfg.train)
    try:
        result = ctx.train(bundle, train_cfg, loss_terms=terms, name="distill", train_set=train_set,
                           evaluate=cfg.evaluate, description=f"distill ({len(matches)} matches, logits {logits_loss})")
    finally:
        term.close()
    ctx.note(f"distilled for {result.summary()}")
    return bundle

