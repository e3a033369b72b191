"""``method: block-movement``: block movement pruning (Lagunas, Charlaix, Sanh & Rush, 2021,
"Block Pruning For Faster Transformers"), ending with the physical removal of emptied heads and neurons.

Movement scores (see :mod:`slimbert.methods.pruning.movement`) are learned per block instead of per
weight: (``block_rows`` x ``block_cols``) blocks of the query, key, value and attention-output
matrices, and whole columns of the FFN output matrix (one score per intermediate neuron: masking
column j of W_out silences neuron j entirely -- the "hybrid" setting, with FFN rows/columns as
blocks). After training, every head whose value rows or output-projection columns are all pruned
contributes a constant (or nothing) and is removed; every neuron whose output column is pruned is
removed. What stays is dense except for zero blocks inside the remaining heads (stored densely:
the speedup comes from the removed structure, which ``ctx.claim`` says).

Accuracy-gate fallback (hard variant): 0.1 lower block and FFN sparsity, the step run again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from slimbert.config import check_range
from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import less
from slimbert.methods.pruning.common.masked_linear import bake
from slimbert.methods.pruning.common.movement_pruner import MovementFields, train_movement
from slimbert.methods.pruning.common.structured import structured_claims
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import LayerView, layer_views
from slimbert.models.surgery import prune_ffn_neurons, prune_heads
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method

ATTENTION_ROLES = ("query", "key", "value", "attn_out")


@dataclass(frozen=True)
class BlockMovementConfig(MovementFields):
    """Movement pruning of attention blocks and FFN neurons, then removal of emptied heads and neurons."""

    sparsity: float | None = 0.5  # hard: fraction of attention blocks pruned per matrix
    ffn_sparsity: float | None = None  # hard: fraction of FFN neurons pruned per layer (default: sparsity)
    block_rows: int = 32
    block_cols: int = 32

    def validate(self) -> None:
        super().validate()
        if self.ffn_sparsity is not None:
            if self.variant == "soft":
                raise ConfigError("variant: soft takes no ffn_sparsity (it follows from threshold and l1_weight)")
            check_range("ffn_sparsity", self.ffn_sparsity, 0, 1, high_inclusive=False)
        if self.block_rows < 1 or self.block_cols < 1:
            raise ConfigError(f"block sizes must be >= 1, got {self.block_rows}x{self.block_cols}")

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        """The blocks must tile q/k/v ((H*d_h) x d) and the attention output (d x (H*d_h)) of every layer."""
        check_transformer(model, "block movement pruning")
        for layer, heads in enumerate(model.heads):
            width = heads * model.head_size
            for rows, cols in ((width, model.hidden), (model.hidden, width)):
                if rows % self.block_rows or cols % self.block_cols:
                    raise ConfigError(
                        f"block {self.block_rows}x{self.block_cols} does not tile the {rows}x{cols} attention matrices "
                        f"of layer {layer + 1}; choose block sizes that divide the head size {model.head_size} and the "
                        f"width {model.hidden}")
        return replace(model, uniform_layers=False)  # which heads and neurons empty out depends on training


def _head_columns(view: LayerView, head: int) -> slice:
    return slice(head * view.head_size, (head + 1) * view.head_size)


@torch.no_grad()
def empty_heads(view: LayerView) -> list[int]:
    """Heads whose value rows or output-projection columns are all zero; the value-bias contribution of
    those with zero value rows (a constant, since attention weights sum to 1) is folded into the
    output bias, so removing them changes no output."""
    heads = []
    for h in range(view.num_heads):
        cols = _head_columns(view, h)
        if not view.attn_out.weight[:, cols].any():
            heads.append(h)
        elif not view.value.weight[cols].any():
            if view.value.bias is not None:
                view.attn_out.bias += view.attn_out.weight[:, cols] @ view.value.bias[cols]
            heads.append(h)
    return heads


@torch.no_grad()
def empty_neurons(view: LayerView) -> list[int]:
    """FFN neurons whose output column is all zero (they add nothing)."""
    return (~view.ffn_out.weight.any(dim=0)).nonzero().flatten().tolist()


def remove_emptied_units(model: nn.Module) -> tuple[int, int, list[str]]:
    """Physically remove emptied heads and neurons (a layer always keeps one); return counts and notes."""
    heads, neurons, notes = {}, {}, []
    for view in layer_views(model):
        gone = empty_heads(view)
        if len(gone) == view.num_heads:  # keep one head: a layer needs one (its output is ~constant)
            notes.append(f"layer {view.index + 1}: every head emptied; one kept")
            gone = gone[1:]
        heads[view.index] = gone
        idle = empty_neurons(view)
        if len(idle) == view.intermediate_size:
            notes.append(f"layer {view.index + 1}: every FFN neuron emptied; one kept")
            idle = idle[1:]
        neurons[view.index] = idle
    prune_heads(model, heads)
    prune_ffn_neurons(model, neurons)
    return sum(map(len, heads.values())), sum(map(len, neurons.values())), notes


@register_method("block-movement", BlockMovementConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: less(cfg, "sparsity", "ffn_sparsity"))
def apply_block_movement(bundle: ModelBundle, cfg: BlockMovementConfig, ctx: StepContext) -> ModelBundle:
    """Block movement pruning with removal of emptied heads and FFN neurons."""
    check_transformer(bundle, "block movement pruning")

    def block_of(linear: nn.Module, view: LayerView, role: str) -> tuple[int, int]:
        if role in ATTENTION_ROLES:
            return cfg.block_rows, cfg.block_cols
        return linear.out_features, 1  # ffn_out: one column = one neuron

    def sparsity_of(role: str) -> float | None:
        if cfg.sparsity is None or role in ATTENTION_ROLES:
            return cfg.sparsity
        return cfg.ffn_sparsity if cfg.ffn_sparsity is not None else cfg.sparsity

    train_movement(bundle, cfg, ctx, block_of, roles=(*ATTENTION_ROLES, "ffn_out"), sparsity_of=sparsity_of,
                   name="block-movement")
    bake(bundle.model)
    total_heads = sum(v.num_heads for v in layer_views(bundle.model))
    total_neurons = sum(v.intermediate_size for v in layer_views(bundle.model))
    n_heads, n_neurons, notes = remove_emptied_units(bundle.model)
    for note in notes:
        ctx.note(note)
    ctx.note(f"removed {n_heads}/{total_heads} heads and {n_neurons}/{total_neurons} FFN neurons; heads per layer "
             f"{[v.num_heads for v in layer_views(bundle.model)]}, FFN widths "
             f"{[v.intermediate_size for v in layer_views(bundle.model)]}")
    ctx.note("zero blocks left inside the remaining heads are stored and multiplied densely: only the removed heads "
             "and neurons save size and time")
    structured_claims(ctx, "emptied attention heads and FFN neurons")
    return bundle
