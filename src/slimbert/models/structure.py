"""The architecture table: where embeddings, layers, attention heads and FFNs live, per model type.

This is the only place that knows module paths such as ``bert.encoder.layer`` (nn_pruning's
structure table and optimum's normalized configs play this role elsewhere). Algorithms ask for
"the FFN input linear of layer i" through :class:`LayerView` and never spell paths themselves.

Paths in :class:`ArchSpec` are relative to the sequence-classification model
(``BertForSequenceClassification`` etc.) except the per-layer ones, which are relative to one
encoder layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimbert.errors import ConfigError, ModelLoadError


@dataclass(frozen=True)
class ArchSpec:
    """Module paths and config attribute names of one architecture.

    Transformer encoders fill every field. Non-transformer students (slimbert's BiLSTM and CNN,
    after Tang et al. 2019) have ``kind`` "recurrent"/"convolutional" and no layer paths:
    :func:`layer_views` is empty for them and they report their own FLOPs.
    """

    model_type: str
    base: str  # the backbone attribute of the task model
    embeddings: str
    word_embeddings: str
    # pooler is None when the head has none
    pooler: str | None
    classifier: tuple[str, ...]
    cfg_hidden: str
    kind: str = "transformer"
    layers: str | None = None
    # per-layer paths (relative to one encoder layer)
    self_attention: str | None = None  # the module computing softmax(QK^T)V
    query: str | None = None
    key: str | None = None
    value: str | None = None
    attn_out: str | None = None
    attn_norm: str | None = None
    ffn_in: str | None = None
    ffn_act: str | None = None
    ffn_out: str | None = None
    ffn_norm: str | None = None
    # config attribute names
    cfg_layers: str | None = None
    cfg_heads: str | None = None
    cfg_intermediate: str | None = None
    # attributes of the self-attention module that record its head count / total width (kept in step
    # with the projections' shapes by head pruning; None where the architecture has no such attribute)
    attn_heads_attr: str | None = "num_attention_heads"
    attn_width_attr: str | None = "all_head_size"
    # the tensors the model takes (DistilBERT and RoBERTa have no token types)
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    # how the task head reads the last hidden states (see :func:`classify`): "pooler" (BERT: pooler on [CLS],
    # then the classifier), "sequence" (RoBERTa: the classification head takes the whole sequence and reads
    # <s> itself), "cls-relu" (DistilBERT: pre_classifier on [CLS], ReLU, classifier)
    head_style: str = "pooler"

    @property
    def is_transformer(self) -> bool:
        return self.kind == "transformer"

    @property
    def linear_roles(self) -> tuple[str, ...]:
        return ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


_BERT_LAYER = dict(
    self_attention="attention.self",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    attn_norm="attention.output.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_act="intermediate.intermediate_act_fn",
    ffn_out="output.dense",
    ffn_norm="output.LayerNorm",
)
_BERT_CFG = dict(
    cfg_layers="num_hidden_layers",
    cfg_heads="num_attention_heads",
    cfg_hidden="hidden_size",
    cfg_intermediate="intermediate_size",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec(
        model_type="bert",
        base="bert",
        embeddings="bert.embeddings",
        word_embeddings="bert.embeddings.word_embeddings",
        layers="bert.encoder.layer",
        pooler="bert.pooler",
        classifier=("classifier",),
        **_BERT_LAYER,
        **_BERT_CFG,
    ),
    "roberta": ArchSpec(
        model_type="roberta",
        base="roberta",
        embeddings="roberta.embeddings",
        word_embeddings="roberta.embeddings.word_embeddings",
        layers="roberta.encoder.layer",
        pooler=None,  # RobertaForSequenceClassification has no pooler; its head has its own dense
        classifier=("classifier",),
        inputs=("input_ids", "attention_mask"),
        head_style="sequence",
        **_BERT_LAYER,
        **_BERT_CFG,
    ),
    "distilbert": ArchSpec(
        model_type="distilbert",
        base="distilbert",
        embeddings="distilbert.embeddings",
        word_embeddings="distilbert.embeddings.word_embeddings",
        layers="distilbert.transformer.layer",
        self_attention="attention",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attn_out="attention.out_lin",
        attn_norm="sa_layer_norm",
        ffn_in="ffn.lin1",
        ffn_act="ffn.activation",
        ffn_out="ffn.lin2",
        ffn_norm="output_layer_norm",
        pooler=None,
        classifier=("pre_classifier", "classifier"),
        cfg_layers="n_layers",
        cfg_heads="n_heads",
        cfg_hidden="dim",
        cfg_intermediate="hidden_dim",
        attn_heads_attr="n_heads",
        attn_width_attr=None,
        inputs=("input_ids", "attention_mask"),
        head_style="cls-relu",
    ),
    # Non-transformer students (slimbert.models.nontransformer).
    "slimbert-bilstm": ArchSpec(
        model_type="slimbert-bilstm", base="", embeddings="embeddings", word_embeddings="embeddings", pooler=None,
        classifier=("classifier",), cfg_hidden="hidden_size", kind="recurrent", inputs=("input_ids", "attention_mask"),
    ),
    "slimbert-cnn": ArchSpec(
        model_type="slimbert-cnn", base="", embeddings="embeddings", word_embeddings="embeddings", pooler=None,
        classifier=("classifier",), cfg_hidden="embedding_dim", kind="convolutional", inputs=("input_ids", "attention_mask"),
    ),
}


# The pretrained encoder families slimbert takes as input (the rest of the table is its own students).
ENCODER_TYPES = ("bert", "roberta", "distilbert")


def arch_of(model_or_config) -> ArchSpec:
    """The :class:`ArchSpec` of a model (or config), by ``config.model_type``."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ModelLoadError(
            f"model type {model_type!r} is not supported; slimbert supports {', '.join(ENCODER_TYPES)} "
            "(BERT-family encoders). Pass a checkpoint of one of these types."
        )
    return ARCHITECTURES[model_type]


def get_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = get_module(root, parent_path) if parent_path else root
    if name.isdigit():
        parent[int(name)] = new
    else:
        setattr(parent, name, new)


def config_value(model_or_config, role: str) -> int:
    """A shape hyper-parameter by role: 'layers', 'heads', 'hidden' or 'intermediate'."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, getattr(arch_of(config), f"cfg_{role}"))


def head_size(model_or_config) -> int:
    """Width of one attention head (d_head = hidden / heads); never changed by head pruning."""
    return config_value(model_or_config, "hidden") // config_value(model_or_config, "heads")


class LayerView:
    """One encoder layer seen through the architecture table.

    ``view.query`` etc. return modules; ``view.replace("ffn_in", new)`` swaps one. Head counts and
    FFN widths are read from the current module shapes, so they stay right after surgery
    (layers may have different head counts and FFN widths).
    """

    def __init__(self, layer: nn.Module, arch: ArchSpec, head_size: int, index: int, path: str):
        self.layer = layer
        self.arch = arch
        self.head_size = head_size
        self.index = index
        self.path = path  # full path of the layer in the task model

    def module(self, role: str) -> nn.Module:
        return get_module(self.layer, getattr(self.arch, role))

    def module_path(self, role: str) -> str:
        return f"{self.path}.{getattr(self.arch, role)}"

    def replace(self, role: str, new: nn.Module) -> None:
        set_module(self.layer, getattr(self.arch, role), new)

    def __getattr__(self, role: str) -> nn.Module:
        if role in ("query", "key", "value", "attn_out", "ffn_in", "ffn_act", "ffn_out", "attn_norm", "ffn_norm",
                    "self_attention"):
            return self.module(role)
        raise AttributeError(role)

    def linears(self) -> dict[str, nn.Module]:
        return {role: self.module(role) for role in self.arch.linear_roles}

    @property
    def num_heads(self) -> int:
        return _out_features(self.module("query")) // self.head_size

    @property
    def intermediate_size(self) -> int:
        return _out_features(self.module("ffn_in"))


def _out_features(module: nn.Module) -> int:
    out = getattr(module, "out_features", None)
    if out is None:
        raise TypeError(f"{type(module).__name__} does not expose out_features")
    return out


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    arch = arch_of(model)
    return get_module(model, arch.layers) if arch.layers else nn.ModuleList()


def layer_views(model: nn.Module) -> list[LayerView]:
    """A :class:`LayerView` for every encoder layer of ``model``, in order (none for non-transformers)."""
    arch = arch_of(model)
    if not arch.is_transformer:
        return []
    d_head = head_size(model)
    return [LayerView(layer, arch, d_head, i, f"{arch.layers}.{i}") for i, layer in enumerate(encoder_layers(model))]


def embedding_module(model: nn.Module) -> nn.Module:
    return get_module(model, arch_of(model).embeddings)


def plain_word_table(model: nn.Module, method: str) -> nn.Embedding:
    """The word-embedding table, which ``method`` needs as a plain ``nn.Embedding`` (ConfigError otherwise)."""
    path = arch_of(model).word_embeddings
    table = get_module(model, path)
    if type(table) is not nn.Embedding:
        raise ConfigError(f"{method}: {path} is a {type(table).__name__}, not a plain embedding table; put {method} "
                          "before steps that quantize, factor, trim or code the embeddings")
    return table


def head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The task head: the pooler (when the architecture has one) and the classifier modules."""
    arch = arch_of(model)
    paths = ([arch.pooler] if arch.pooler else []) + list(arch.classifier)
    return {p: get_module(model, p) for p in paths}


def classify(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The task head of ``model`` on last hidden states (B, T, d) -> logits (B, C), exactly as the model's own
    forward computes it (dropout included, so it is inactive in eval mode)."""
    arch = arch_of(model)
    if arch.head_style == "sequence":
        return get_module(model, arch.classifier[0])(hidden)
    if arch.head_style == "pooler":
        pooled = get_module(model, arch.pooler)(hidden) if arch.pooler else hidden[:, 0]  # (B, d)
        return get_module(model, arch.classifier[-1])(model.dropout(pooled))
    if arch.head_style == "cls-relu":
        pooled = torch.relu(get_module(model, arch.classifier[0])(hidden[:, 0]))  # (B, d)
        return get_module(model, arch.classifier[-1])(model.dropout(pooled))
    raise ConfigError(f"{arch.model_type}: no task head of style {arch.head_style!r}")


def head_linears(model: nn.Module) -> tuple[nn.Linear | None, nn.Linear]:
    """The task head's [CLS] projection (None when it has none) and its output linear (d -> C)."""
    arch = arch_of(model)
    if arch.head_style == "sequence":
        head = get_module(model, arch.classifier[0])
        return head.dense, head.out_proj
    if arch.head_style == "pooler":
        return (get_module(model, arch.pooler).dense if arch.pooler else None), get_module(model, arch.classifier[-1])
    return get_module(model, arch.classifier[0]), get_module(model, arch.classifier[-1])


def is_embedding_parameter(model: nn.Module, name: str) -> bool:
    """True for parameters of the embedding block (token, position, type embeddings and its LayerNorm)."""
    return name.startswith(arch_of(model).embeddings + ".")
