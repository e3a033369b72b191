"""Which layers to drop (Sajjad et al.'s strategies) and dropping them, shared by ``drop-layers`` and
``layerdrop``."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from slimbert.errors import ConfigError
from slimbert.steps.sampling import sample_batches
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.layer_selection import select_layers
from slimbert.models.outputs import model_outputs
from slimbert.models.structure import config_value
from slimbert.models.surgery import keep_layers
from slimbert.steps.context import StepContext

Strategy = Literal["top", "bottom", "alternate", "alternate-even", "symmetric", "contribution"]


def layers_to_drop(strategy: Strategy, num_layers: int, count: int,
                   contribution: Sequence[float] | None = None) -> list[int]:
    """The 0-based layers ``strategy`` drops (sorted). ``contribution``: per-layer input/output similarity."""
    L, k = num_layers, count
    if not 1 <= k < L:
        raise ConfigError(f"can drop 1..{L - 1} of {L} layers (at least one must stay), asked for {k}")
    if strategy == "top":
        keep = select_layers("first", L, L - k)
        return [i for i in range(L) if i not in keep]
    if strategy == "bottom":
        keep = select_layers("last", L, L - k)
        return [i for i in range(L) if i not in keep]
    if strategy in ("alternate", "alternate-even"):
        first = L - 2 if strategy == "alternate" else L - 1
        if first - 2 * (k - 1) < 0:
            raise ConfigError(f"{strategy} dropping removes at most {first // 2 + 1} of {L} layers, asked for {k}")
        return sorted(first - 2 * j for j in range(k))
    if strategy == "symmetric":
        start = (L - k) // 2
        return list(range(start, start + k))
    if contribution is None or len(contribution) != L:
        raise ValueError("the contribution strategy needs one similarity per layer")
    most_similar = sorted(range(L), key=lambda i: -contribution[i])  # high similarity = small change
    return sorted(most_similar[:k])


@torch.no_grad()
def layer_similarity(model, batches: Sequence[dict[str, torch.Tensor]]) -> list[float]:
    """Per layer: mean cosine similarity between its input and output hidden states (real tokens only)."""
    was_training = model.training
    model.eval()
    sums, tokens = None, 0
    device = next(model.parameters()).device
    for batch in batches:
        out = model_outputs(model, {k: v.to(device) for k, v in batch.items()}, hidden=True)
        mask = out.attention_mask.bool()  # (B, T)
        sims = torch.stack([F.cosine_similarity(a, b, dim=-1)[mask].sum()  # a, b: (B, T, d)
                            for a, b in zip(out.hidden_states[:-1], out.hidden_states[1:])])
        sums = sims.cpu() if sums is None else sums + sims.cpu()
        tokens += int(mask.sum())
    model.train(was_training)
    return (sums / tokens).tolist()


def planned_drop(model: ModelShape, strategy: Strategy, count: int) -> ModelShape:
    """The shape after dropping ``count`` layers by ``strategy``, checked before any work (``contribution``
    picks its layers from data: the layout is an estimate, the count is exact)."""
    if strategy == "contribution":
        if not 1 <= count < model.layers:
            layers_to_drop("top", model.layers, count)  # raises the same out-of-range error
        dropped = list(range(model.layers - count, model.layers))
    else:
        dropped = layers_to_drop(strategy, model.layers, count)
    return model.keep_layers([i for i in range(model.layers) if i not in dropped])


def drop_layers(bundle: ModelBundle, ctx: StepContext, strategy: Strategy, count: int, samples: int) -> list[int]:
    """Remove ``count`` layers chosen by ``strategy`` in place; return the dropped 0-based indices."""
    num_layers = config_value(bundle.model, "layers")
    contribution = None
    if strategy == "contribution":
        contribution = layer_similarity(bundle.model, sample_batches(ctx, bundle.tokenizer, samples))
        ctx.note("input/output similarity per layer: " + ", ".join(f"{s:.3f}" for s in contribution))
    dropped = layers_to_drop(strategy, num_layers, count, contribution)
    keep_layers(bundle.model, [i for i in range(num_layers) if i not in dropped])
    ctx.note(f"dropped layers {[i + 1 for i in dropped]} of {num_layers} ({strategy})")
    return dropped
