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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from slimbert.config import MethodConfig
from slimbert.context import StepContext
from slimbert.errors import ConfigError
from slimbert.methods.distillation.students import select_layers
from slimbert.methods.pruning.checks import check_transformer
from slimbert.methods.pruning.finetune import TeacherDistillation, train_pruned
from slimbert.methods.pruning.sampling import sample_batches
from slimbert.methods.pruning.structured import structured_claims
from slimbert.models.bundle import ModelBundle
from slimbert.models.outputs import model_outputs
from slimbert.models.structure import config_value
from slimbert.models.surgery import keep_layers
from slimbert.registry import register_method
from slimbert.training.config import TrainConfig

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


@dataclass(frozen=True)
class DropLayersConfig(MethodConfig):
    """Drop whole encoder layers by a Poor Man's BERT strategy, then (optionally) fine-tune."""

    strategy: Strategy = "top"
    num_drop: int = 2
    contribution_samples: int = 256
    distill: TeacherDistillation | None = None
    train: TrainConfig | None = TrainConfig(learning_rate=5e-5, epochs=1.0)  # after dropping; null: no training

    def validate(self) -> None:
        if self.num_drop < 1 or self.contribution_samples < 1:
            raise ConfigError(f"num_drop and contribution_samples must be >= 1, got {self.num_drop} and "
                              f"{self.contribution_samples}")
        if self.train is not None:
            self.train.validate()


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


@register_method("drop-layers", DropLayersConfig, family="pruning")
def apply_drop_layers(bundle: ModelBundle, cfg: DropLayersConfig, ctx: StepContext) -> ModelBundle:
    """Poor Man's BERT: drop layers (top, bottom, alternate, symmetric, by contribution), then fine-tune."""
    check_transformer(bundle, "layer dropping")
    drop_layers(bundle, ctx, cfg.strategy, cfg.num_drop, cfg.contribution_samples)
    if cfg.train is not None:
        train_pruned(bundle, ctx, cfg.train, distill=cfg.distill, name="drop-layers",
                     description=f"fine-tuning after dropping {cfg.num_drop} layers ({cfg.strategy})")
    structured_claims(ctx, "encoder layers")
    return bundle
