"""The adaptive encoder runner: one loop over the layers, shared by early exit and token dropping.

For a batch of B examples it runs the embeddings, then layer after layer:

* **early exit** (after layer i, when layer i has an exit head and a criterion is set): the rows whose exit
  criterion holds take that head's logits and *leave the batch*; the remaining rows are gathered into a
  smaller batch for layer i + 1. A batch therefore does not wait for its slowest example, and an example's
  result never depends on its neighbours.
* **token dropping** (after layer i, when the retention schedule has an entry for it): each remaining row keeps
  its most attended tokens and the others are gathered out, so layer i + 1 runs on a shorter sequence.

Rows still running after the last layer take the model's own task head. With neither exits nor dropping it
computes exactly the model's forward. The same loop drives PyTorch segments and ONNX Runtime segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from slimbert.errors import ConfigError
from slimbert.models.adaptive.criteria import ExitCriterion, PatienceState, should_exit
from slimbert.models.adaptive.segments import Segments
from slimbert.models.adaptive.token_dropping import keep_counts, select_tokens


@dataclass(frozen=True)
class AdaptiveSettings:
    """What the runner does: an exit criterion (None: no early exit) and a retention schedule (fraction of each
    example's real tokens kept after layer i, non-increasing; empty: no token dropping)."""

    exit: ExitCriterion | None = None
    retention: tuple[float, ...] = ()
    min_exit_layer: int = 0  # exits before this layer are not taken

    def validate(self, num_layers: int | None = None) -> "AdaptiveSettings":
        if self.exit is not None:
            self.exit.validate()
        if any(not 0.0 < r <= 1.0 for r in self.retention):
            raise ConfigError(f"retention fractions must be in (0, 1], got {list(self.retention)}")
        if any(b > a + 1e-12 for a, b in zip(self.retention, self.retention[1:])):
            raise ConfigError(f"the retention schedule must not increase from layer to layer: {list(self.retention)}")
        if num_layers is not None and len(self.retention) > num_layers:
            raise ConfigError(f"the retention schedule has {len(self.retention)} entries but the model has "
                              f"{num_layers} layers")
        return self

    def scoring_layers(self, num_layers: int) -> tuple[int, ...]:
        """The layers (0-based) after which tokens are dropped, so whose attention scores are read (never the
        last layer: nothing follows it)."""
        return tuple(range(min(len(self.retention), num_layers - 1)))

    @property
    def active(self) -> bool:
        return self.exit is not None or bool(self.retention)

    def to_dict(self) -> dict[str, Any]:
        return {"exit": vars(self.exit) if self.exit else None, "retention": list(self.retention),
                "min_exit_layer": self.min_exit_layer}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "AdaptiveSettings":
        data = data or {}
        exit_ = data.get("exit")
        return cls(exit=ExitCriterion(**exit_) if exit_ else None, retention=tuple(data.get("retention") or ()),
                   min_exit_layer=int(data.get("min_exit_layer", 0)))


@dataclass
class AdaptiveOutput:
    logits: torch.Tensor  # (B, C)
    exit_layer: torch.Tensor  # (B,) 1-based: the number of encoder layers each example ran
    tokens: torch.Tensor  # (B, L) tokens each example fed to each layer (0 after it exited)
    notes: list[str] = field(default_factory=list)


def run_adaptive(segments: Segments, inputs: dict[str, torch.Tensor], settings: AdaptiveSettings) -> AdaptiveOutput:
    """Run a batch ``inputs`` ((B, T) tensors: input_ids, attention_mask, ...) through ``segments``."""
    mask = inputs["attention_mask"]
    batch, num_layers = mask.shape[0], segments.num_layers
    if settings.exit is not None and not segments.exit_layers:
        raise ConfigError("early exit needs exit heads, and this model has none: add an early-exit step to the "
                          "recipe (it trains them) or run without an exit criterion")
    hidden = segments.embed(inputs)  # (B, T, d)
    rows = torch.arange(batch)  # which original example each running row is
    real_lengths = mask.sum(-1)  # (B,) for the retention counts
    patience = PatienceState.start(batch)
    logits: torch.Tensor | None = None
    exit_layer = torch.full((batch,), num_layers, dtype=torch.long)
    tokens = torch.zeros(batch, num_layers, dtype=torch.long)
    scoring = settings.scoring_layers(num_layers)
    for i in range(num_layers):
        tokens[rows, i] = mask.sum(-1).to(torch.long)
        drop_after = i in scoring
        hidden, scores = segments.layer(i, hidden, mask, drop_after)  # (b, t, d), (b, t) | None
        exit_here = settings.exit is not None and i in segments.exit_layers and i >= settings.min_exit_layer
        if exit_here:
            head_logits = segments.exit(i, hidden, mask)  # (b, C)
            if logits is None:
                logits = head_logits.new_zeros(batch, head_logits.shape[-1])
            leave, patience = should_exit(settings.exit, head_logits, patience)
            if bool(leave.any()):
                logits[rows[leave]] = head_logits[leave]
                exit_layer[rows[leave]] = i + 1
                stay = ~leave
                if not bool(stay.any()):
                    return AdaptiveOutput(logits, exit_layer, tokens)
                rows, hidden, mask, patience = rows[stay], hidden[stay], mask[stay], patience.select(stay)
                if scores is not None:
                    scores = scores[stay]
        if drop_after:
            counts = keep_counts(real_lengths[rows], settings.retention[i])
            hidden, mask, _ = select_tokens(hidden, mask, scores, counts)
    final = segments.head(hidden)  # (b, C)
    if logits is None:
        logits = final.new_zeros(batch, final.shape[-1])
    logits[rows] = final
    return AdaptiveOutput(logits, exit_layer, tokens)
