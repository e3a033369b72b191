"""Students: built from the teacher (a subset of its layers, weights copied), from a smaller
Transformer config (random init), or a non-Transformer (BiLSTM / CNN, Tang et al. 2019).

``method: student`` replaces the recipe's current model by the student; a later ``distill`` step
trains it against the teacher. Students are plain models: later steps (pruning, quantization)
apply to them like to any other model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Literal

import torch

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.layer_selection import LayerSelection, select_layers
from slimbert.models.structure import arch_of, config_value, get_module, set_module
from slimbert.models.surgery import check_layer_indices, keep_layers
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method


@dataclass(frozen=True)
class StudentConfig(MethodConfig):
    """Replace the model by a student built from it (layers copied, smaller config, or BiLSTM/CNN)."""

    architecture: Literal["transformer", "bilstm", "cnn"] = "transformer"
    # Transformer students from the teacher's layers: an explicit 0-based list, or a selection rule.
    keep_layers: tuple[int, ...] = ()
    num_layers: int | None = None
    layer_selection: LayerSelection = "every-other"
    # Transformer students from a smaller config (random init); any unset size keeps the teacher's.
    hidden_size: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None
    random_init: bool = False
    # Non-transformer students.
    embedding_dim: int | None = None  # default: the teacher's width (so its embeddings can be copied)
    lstm_hidden: int = 300
    cnn_filters: int = 100
    init_embeddings_from_teacher: bool = True

    def validate(self) -> None:
        sizes = (self.hidden_size, self.num_attention_heads, self.intermediate_size)
        if self.architecture != "transformer" and (self.keep_layers or any(s is not None for s in sizes)):
            raise ConfigError("keep_layers and Transformer sizes only apply to architecture: transformer")
        if self.keep_layers and self.num_layers is not None:
            raise ConfigError("give keep_layers or num_layers (+ layer_selection), not both")
        if any(s is not None for s in sizes) and not self.random_init:
            raise ConfigError("hidden_size / num_attention_heads / intermediate_size build a new, randomly initialised "
                              "student: set random_init: true (weights cannot be copied across sizes)")

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        """The student's shape; layer choices, sizes and embedding widths checked against the model."""
        if self.architecture != "transformer":
            width = self.embedding_dim or model.hidden
            if self.init_embeddings_from_teacher and width != model.hidden:
                raise ConfigError(f"init_embeddings_from_teacher needs embedding_dim == the teacher's width {model.hidden}")
            return ModelShape(model_type=f"slimbert-{self.architecture}", is_transformer=False, layers=0, hidden=width,
                              head_size=0, heads=(), intermediate=(), vocab_size=model.vocab_size)
        if not model.is_transformer:
            raise ConfigError(f"a Transformer student is built from a Transformer model; this one is a {model.model_type}")
        if self.random_init:
            layers = self.num_layers or model.layers
            hidden = self.hidden_size or model.hidden
            heads = self.num_attention_heads or model.hidden // model.head_size
            if hidden % heads:
                raise ConfigError(f"hidden_size {hidden} is not divisible by {heads} attention heads")
            intermediate = self.intermediate_size or model.intermediate[0]
            return replace(model, layers=layers, hidden=hidden, head_size=hidden // heads, heads=(heads,) * layers,
                           intermediate=(intermediate,) * layers, uniform_layers=True)
        return model.keep_layers(self.teacher_layers(model.layers))

    def teacher_layers(self, teacher_layers: int) -> list[int]:
        """The 0-based teacher layers a student copies (``keep_layers``, or the selection rule)."""
        if not self.keep_layers:
            return select_layers(self.layer_selection, teacher_layers, self.num_layers or teacher_layers // 2)
        return check_layer_indices(self.keep_layers, teacher_layers)


def transformer_from_teacher(teacher: ModelBundle, layers: list[int]) -> ModelBundle:
    student = teacher.clone()
    keep_layers(student.model, layers)
    return student


def transformer_from_config(teacher: ModelBundle, cfg: StudentConfig) -> ModelBundle:
    """A randomly initialised Transformer of the teacher's family with the given sizes."""
    from transformers import AutoModelForSequenceClassification

    arch = arch_of(teacher.model)
    config = copy.deepcopy(teacher.model.config)
    for role, value in (("layers", cfg.num_layers), ("hidden", cfg.hidden_size), ("heads", cfg.num_attention_heads),
                        ("intermediate", cfg.intermediate_size)):
        if value is not None:
            setattr(config, getattr(arch, f"cfg_{role}"), value)
    if config_value(config, "hidden") % config_value(config, "heads"):
        raise ConfigError(f"hidden_size {config_value(config, 'hidden')} is not divisible by "
                          f"{config_value(config, 'heads')} attention heads")
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    if config_value(config, "hidden") == config_value(teacher.model, "hidden"):
        _copy_embeddings(teacher, model)
    return ModelBundle(model=model.eval(), tokenizer=teacher.tokenizer, source=f"student of {teacher.source}")


def _copy_embeddings(teacher: ModelBundle, model) -> None:
    """The teacher's embedding block, whatever its kind (plain, or ALBERT-factored word embeddings)."""
    block = get_module(teacher.model, arch_of(teacher.model).embeddings)
    set_module(model, arch_of(model).embeddings, copy.deepcopy(block))


def non_transformer(teacher: ModelBundle, cfg: StudentConfig) -> ModelBundle:
    from slimbert.models.nontransformer import (
        BiLSTMConfig,
        BiLSTMForSequenceClassification,
        CNNConfig,
        CNNForSequenceClassification,
    )

    t_config = teacher.model.config
    width = config_value(teacher.model, "hidden")
    emb_dim = cfg.embedding_dim or width
    common = dict(vocab_size=t_config.vocab_size, embedding_dim=emb_dim, pad_token_id=t_config.pad_token_id or 0,
                  num_labels=t_config.num_labels, id2label=t_config.id2label, label2id=t_config.label2id,
                  problem_type=t_config.problem_type)
    if cfg.architecture == "bilstm":
        model = BiLSTMForSequenceClassification(BiLSTMConfig(hidden_size=cfg.lstm_hidden, **common))
    else:
        model = CNNForSequenceClassification(CNNConfig(filters=cfg.cnn_filters, **common))
    if cfg.init_embeddings_from_teacher:
        if emb_dim != width:
            raise ConfigError(f"init_embeddings_from_teacher needs embedding_dim == the teacher's width {width}")
        with torch.no_grad():
            model.embeddings.weight.copy_(get_module(teacher.model, arch_of(teacher.model).word_embeddings).weight)
    return ModelBundle(model=model.eval(), tokenizer=teacher.tokenizer, source=f"{cfg.architecture} student of {teacher.source}")


@register_method("student", StudentConfig, family="distillation")
def apply_student(bundle: ModelBundle, cfg: StudentConfig, ctx: StepContext) -> ModelBundle:
    """Replace the model by a smaller student: teacher layers, a smaller config, or a BiLSTM/CNN."""
    teacher_layers = config_value(bundle.model, "layers")
    if cfg.architecture != "transformer":
        student = non_transformer(bundle, cfg)
    elif cfg.random_init:
        student = transformer_from_config(bundle, cfg)
    else:
        layers = cfg.teacher_layers(teacher_layers)
        student = transformer_from_teacher(bundle, layers)
        ctx.note(f"student keeps teacher layers {[i + 1 for i in layers]} of {teacher_layers} (weights copied)")
    student.history = list(bundle.history)
    student.onnx_transforms = list(bundle.onnx_transforms)
    ctx.claim("speed", "pytorch", True, "fewer/lighter layers: fewer FLOPs on any runtime")
    ctx.claim("speed", "onnxruntime", True, "fewer/lighter layers: fewer FLOPs on any runtime")
    ctx.claim("size", "disk", True, "fewer parameters stored")
    return student
