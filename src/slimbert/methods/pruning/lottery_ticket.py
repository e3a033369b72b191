"""``method: lottery-ticket``: iterative magnitude pruning with rewinding (Chen et al., 2020,
"The Lottery Ticket Hypothesis for Pre-trained BERT Networks"; Frankle & Carbin, 2019).

Round r of R: train the masked model, prune the smallest surviving weights (global magnitude by
default) to sparsity 1 - (1 - s)^(r/R), then *rewind* every weight to the fine-tuning start weights
(the model as it entered this step, which is the recipe's input model for a first step) while
keeping the mask. After the last round the final subnetwork (the "ticket") is trained once more
from the rewound weights. That is R + 1 training runs, each resumable on its own: a rerun replays
finished rounds from their final checkpoints and the pruning between rounds is deterministic.

Accuracy-gate fallback: 0.1 lower final sparsity, every round run again, until the gate passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimbert.config import MethodConfig, check_range
from slimbert.errors import ConfigError
from slimbert.methods.pruning.common.checks import check_transformer
from slimbert.methods.pruning.common.fallback import less
from slimbert.methods.pruning.common.fine_tuning import train_pruned
from slimbert.methods.pruning.common.magnitude_pruner import MagnitudePruner, Scope, wrap_masked
from slimbert.methods.pruning.common.sparse_storage import SparseStorage
from slimbert.methods.pruning.common.unstructured import finish_unstructured
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig


def round_sparsities(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each round: the same fraction of the survivors is pruned every round."""
    return [1.0 - (1.0 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


@dataclass(frozen=True)
class LotteryConfig(MethodConfig):
    """Iterative magnitude pruning with rewinding to the fine-tuning start weights (lottery tickets)."""

    sparsity: float = 0.7
    rounds: int = 3
    scope: Scope = "global"
    storage: SparseStorage = SparseStorage()
    train: TrainConfig = TrainConfig(learning_rate=5e-5, epochs=1.0)  # per round, and for the final ticket

    def validate(self) -> None:
        check_range("sparsity", self.sparsity, 0, 1, high_inclusive=False)
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        self.train.validate()

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        check_transformer(model, "lottery-ticket pruning")
        return self.storage.planned(model)


@register_method("lottery-ticket", LotteryConfig, family="pruning", accepts_distill=True,
                 fallback=lambda cfg: less(cfg, "sparsity"))
def apply_lottery(bundle: ModelBundle, cfg: LotteryConfig, ctx: StepContext) -> ModelBundle:
    """Iterative magnitude pruning with rewinding; the final ticket is trained, then stored sparsely."""
    check_transformer(bundle, "lottery-ticket pruning")
    pruner = MagnitudePruner(wrap_masked(bundle), cfg.scope, cfg.sparsity)
    model = bundle.model
    # Everything but the masks: what a rewind restores.
    start = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(".mask")}
    for r, sparsity in enumerate(round_sparsities(cfg.sparsity, cfg.rounds), start=1):
        train_pruned(bundle, ctx, cfg.train, name=f"round{r}",
                     description=f"lottery round {r}/{cfg.rounds} (sparsity so far {pruner_sparsity(pruner):.0%})")
        pruner.prune_to(sparsity)
        with torch.no_grad():
            missing, unexpected = model.load_state_dict(start, strict=False)
        if unexpected or not all(k.endswith(".mask") for k in missing):
            raise RuntimeError(f"rewinding changed the model's structure: missing {missing}, unexpected {unexpected}")
        ctx.note(f"lottery round {r}: pruned to {sparsity:.2%}, weights rewound to the step's start")
    train_pruned(bundle, ctx, cfg.train, name="ticket",
                 description=f"training the {cfg.sparsity:.0%} ticket")
    finish_unstructured(bundle, ctx, cfg.storage, cfg.sparsity)
    return bundle


def pruner_sparsity(pruner: MagnitudePruner) -> float:
    pruned = sum(int((~m.mask).sum()) for m in pruner.modules)
    return pruned / sum(m.mask.numel() for m in pruner.modules)
