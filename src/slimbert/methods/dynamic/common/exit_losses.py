"""Loss terms that train exit heads through the one training loop.

``hidden_states[i + 1]`` (B, T, d) is the output of encoder layer i; exit head i reads it.

* :class:`ExitHeadsLoss` ``mode="labels"``: the mean cross-entropy of every exit head on the labels (DeeBERT's
  second stage, Xin et al. ACL 2020, with the backbone frozen).
* ``mode="joint"``: PABEE's / BERxiT's weighted joint loss (Zhou et al. NeurIPS 2020): head i weighted by
  i + 1, the final classifier by L, normalised by the weights' sum; the whole model trains.
* ``mode="self-distill"``: FastBERT's self-distillation (Liu et al. ACL 2020): every head learns the final
  classifier's distribution, KL(p_final || p_head); no labels are read, so unlabelled text is enough.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimbert.models.adaptive.exit_heads import exit_heads_of
from slimbert.training.callbacks import Callback
from slimbert.training.losses import LossTerm

EXIT_LOSS_MODES = ("labels", "joint", "self-distill")


class ExitHeadsLoss(LossTerm):
    name = "exit_heads"
    needs_hidden_states = True

    def __init__(self, mode: str = "labels", weight: float = 1.0):
        super().__init__(weight)
        if mode not in EXIT_LOSS_MODES:
            raise ValueError(f"exit loss mode {mode!r}; expected one of {EXIT_LOSS_MODES}")
        self.mode = mode

    def forward(self, batch, outputs, model):
        heads = exit_heads_of(model)
        mask = batch["attention_mask"]
        per_head = [heads.logits(i, outputs.hidden_states[i + 1], mask) for i in range(len(heads))]  # each (B, C)
        if self.mode == "self-distill":
            teacher = F.softmax(outputs.logits.detach().float(), dim=-1)  # (B, C)
            losses = [F.kl_div(F.log_softmax(lg.float(), dim=-1), teacher, reduction="batchmean") for lg in per_head]
            return torch.stack(losses).mean()
        labels = batch["labels"]
        losses = [F.cross_entropy(lg, labels) for lg in per_head]
        if self.mode == "labels":
            return torch.stack(losses).mean()
        losses.append(F.cross_entropy(outputs.logits, labels))  # the final classifier, weight L
        weights = torch.arange(1, len(losses) + 1, dtype=torch.float32, device=labels.device)
        return (weights * torch.stack(losses)).sum() / weights.sum()


class ExitHeadsLearningRate(Callback):
    """The exit heads in their own optimizer group: in joint training the backbone fine-tunes at a BERT learning
    rate (~3e-5) while freshly initialised heads need a larger one to learn in the same steps."""

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def param_groups(self, model):
        return [{"params": list(exit_heads_of(model).parameters()), "lr": self.learning_rate, "weight_decay": 0.0}]
