"""``method: share-layers``: cross-layer parameter sharing (Lan et al., ICLR 2020, ALBERT).

Consecutive groups of ``group_size`` encoder layers share one set of weights: all of a layer's weights
(``share: all``, ALBERT's default), only the attention block (q, k, v, output projection and its
LayerNorm: ``attention``) or only the FFN (both linears and its LayerNorm: ``ffn``). The shared
module is initialised as the element-wise mean of the group's modules (``init: average``) or as the
group's first layer (``init: first``), then the model recovers by fine-tuning (with the step's
``distill:`` block, from the recipe's input model, when given).

Sharing saves size and memory, not FLOPs: every layer still runs. Groups of 2 halve the shared
weights. Shared modules are one object under several paths: the optimizer sees each weight once, the
artifact stores it once (the file shows it) and the loader ties it again.

Layers of different shapes (after head or FFN pruning) cannot share weights; ``validate`` says so.

Accuracy-gate fallback: groups half as large (while >= 2), and the step runs again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import layer_views
from slimbert.steps.context import StepContext
from slimbert.steps.recovery import recover
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig

SHARED_ROLES = {
    "attention": ("query", "key", "value", "attn_out", "attn_norm"),
    "ffn": ("ffn_in", "ffn_out", "ffn_norm"),
}
SHARED_ROLES["all"] = SHARED_ROLES["attention"] + SHARED_ROLES["ffn"]


@dataclass(frozen=True)
class ShareLayersConfig(MethodConfig):
    """ALBERT cross-layer sharing: groups of consecutive layers share their weights (all, attention or FFN)."""

    group_size: int = 2
    share: Literal["all", "attention", "ffn"] = "all"
    init: Literal["average", "first"] = "average"
    train: TrainConfig | None = TrainConfig(learning_rate=5e-5, epochs=1.0)  # recovery; null: none

    def validate(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (layers per shared group), got {self.group_size}")
        if self.train is not None:
            self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if not model.is_transformer:
            raise ConfigError(f"layer sharing needs Transformer encoder layers; a {model.model_type} model has none")
        if model.layers % self.group_size:
            raise ConfigError(f"group_size {self.group_size} does not divide the model's {model.layers} layers; use a "
                              f"divisor of {model.layers}")
        if not model.uniform_layers:
            raise ConfigError("layers of different shapes cannot share weights: an earlier step (head or FFN pruning) "
                              f"left heads {list(model.heads)} and FFN widths {list(model.intermediate)}; put "
                              "share-layers before head or FFN pruning")
        return replace(model, shared_layers=True)


def fallback(cfg: ShareLayersConfig) -> ShareLayersConfig | None:
    return replace(cfg, group_size=cfg.group_size // 2) if cfg.group_size // 2 >= 2 else None


def average_into(target: torch.nn.Module, members: list[torch.nn.Module]) -> None:
    """``target``'s parameters := the element-wise mean of the same parameters over ``members``."""
    params = [dict(m.named_parameters()) for m in members]
    with torch.no_grad():
        for name, p in target.named_parameters():
            p.copy_(torch.stack([mp[name].detach() for mp in params]).mean(0))


@register_method("share-layers", ShareLayersConfig, family="parameter-sharing", accepts_distill=True,
                 after_sharing=True, fallback=fallback)
def apply_share_layers(bundle: ModelBundle, cfg: ShareLayersConfig, ctx: StepContext) -> ModelBundle:
    """ALBERT cross-layer parameter sharing over groups of consecutive layers, then recovery."""
    views = layer_views(bundle.model)
    if not views:
        raise ConfigError(f"layer sharing needs Transformer encoder layers; a {bundle.arch.model_type} model has none")
    if len(views) % cfg.group_size:
        raise ConfigError(f"group_size {cfg.group_size} does not divide the model's {len(views)} layers")
    before = sum(p.numel() for v in views for p in v.layer.parameters())
    for start in range(0, len(views), cfg.group_size):
        group = views[start:start + cfg.group_size]
        for role in SHARED_ROLES[cfg.share]:
            members = [v.module(role) for v in group]
            shapes = {tuple(p.shape for p in m.parameters()) for m in members}
            if len(shapes) != 1 or {type(m) for m in members} != {type(members[0])}:
                raise ConfigError(f"layers {start}-{start + len(group) - 1} have different {role} shapes or kinds; "
                                  "share-layers must come before head or FFN pruning, quantization and factorization")
            if cfg.init == "average":
                average_into(members[0], members)
            for view in group[1:]:
                view.replace(role, members[0])
    after = sum(p.numel() for p in {id(p): p for v in views for p in v.layer.parameters()}.values())
    ctx.note(f"layers share {cfg.share} weights in groups of {cfg.group_size} ({cfg.init} init): encoder weights "
             f"{before:,} -> {after:,} ({before / after:.2f}x fewer); FLOPs unchanged")
    recover(bundle, ctx, cfg.train, "share-layers",
            f"recovery after sharing {cfg.share} weights in groups of {cfg.group_size}")
    ctx.claim("size", "disk", True, f"encoder weights stored once per group of {cfg.group_size} layers")
    ctx.claim("size", "memory", True, "shared weights are one tensor in memory")
    ctx.claim("speed", "pytorch", False, "sharing saves size and memory, not FLOPs: every layer still runs")
    return bundle
