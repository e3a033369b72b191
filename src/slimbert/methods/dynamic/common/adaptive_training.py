"""Fine-tuning a model on the path the adaptive runner will take (PoWER-BERT's re-training with the retention
schedule, Goyal et al. 2020, without its soft-extract stage).

:class:`AdaptiveForward` is a training-time wrapper whose forward is :func:`~slimbert.models.adaptive.runner.
run_adaptive` (differentiable: kept tokens are gathered, so gradients reach them), so the one training loop trains
the model on the shortened sequences. Its bake step is taking ``.model`` back: the wrapper owns no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimbert.errors import ConfigError
from slimbert.models.adaptive.runner import AdaptiveSettings, run_adaptive
from slimbert.models.adaptive.segments import TorchSegments


@dataclass
class AdaptiveLogits:
    logits: torch.Tensor  # (B, C)


class AdaptiveForward(nn.Module):
    """``model`` whose forward runs the adaptive runner with ``settings``; only logits are returned."""

    def __init__(self, model: nn.Module, settings: AdaptiveSettings):
        super().__init__()
        self.model = model
        self.config = model.config
        self.settings = settings
        self._segments = TorchSegments(model, capture_attention=bool(settings.retention))

    def forward(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False,
                output_attentions=False, **unused) -> AdaptiveLogits:
        if output_hidden_states or output_attentions:
            raise ConfigError("training through token dropping reads logits only: use a logits distill block "
                              "(no layer matches) or none")
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return AdaptiveLogits(run_adaptive(self._segments, inputs, self.settings).logits)

    def bake(self) -> nn.Module:
        return self.model
