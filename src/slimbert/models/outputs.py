"""One typed view of a forward pass: logits, hidden states, attention maps and q/k/v projections.

Distillation and other methods read intermediate outputs through :class:`ModelOutputs` instead of
forking the model's forward. Hidden states and attention probabilities come from the model's own
``output_hidden_states`` / ``output_attentions``; the q/k/v projection outputs (needed for
MiniLM's relations) are captured with forward hooks on the linears the architecture table names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimbert.models.structure import layer_views

PROJECTION_ROLES = ("query", "key", "value")


@dataclass
class ModelOutputs:
    """Shapes for batch B, length T, width d, H heads of width d_h, L layers.

    ``hidden_states[0]`` is the embedding output and ``hidden_states[i]`` the output of layer i.
    """

    logits: torch.Tensor  # (B, C)
    attention_mask: torch.Tensor  # (B, T), 1 = real token
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L+1 x (B, T, d)
    attentions: tuple[torch.Tensor, ...] | None = None  # L x (B, H, T, T) probabilities
    projections: dict[str, list[torch.Tensor]] | None = None  # role -> L x (B, T, H*d_h)

    @property
    def num_layers(self) -> int:
        if self.hidden_states is not None:
            return len(self.hidden_states) - 1
        if self.attentions is not None:
            return len(self.attentions)
        raise ValueError("no per-layer outputs were requested")

    @classmethod
    def from_hf(cls, outputs, attention_mask: torch.Tensor, capture: "ProjectionCapture | None" = None) -> "ModelOutputs":
        return cls(
            logits=outputs.logits,
            attention_mask=attention_mask,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
            projections=capture.pop() if capture is not None else None,
        )


class ProjectionCapture:
    """Forward hooks storing each layer's q/k/v projection outputs from the latest forward pass.

    ``pop()`` returns ``{role: [layer0, layer1, ...]}`` and clears the buffer; ``remove()`` takes
    the hooks off (call it before saving or deep-copying the model).
    """

    def __init__(self, model: nn.Module, roles: tuple[str, ...] = PROJECTION_ROLES):
        self.roles = roles
        self._store: dict[str, dict[int, torch.Tensor]] = {r: {} for r in roles}
        self._handles = []
        for view in layer_views(model):
            for role in roles:
                self._handles.append(view.module(role).register_forward_hook(self._hook(role, view.index)))

    def _hook(self, role: str, index: int):
        def hook(module, args, output):
            self._store[role][index] = output

        return hook

    def pop(self) -> dict[str, list[torch.Tensor]]:
        out = {role: [by_layer[i] for i in sorted(by_layer)] for role, by_layer in self._store.items()}
        self._store = {r: {} for r in self.roles}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def model_outputs(model: nn.Module, batch: dict[str, torch.Tensor], *, hidden: bool = False, attentions: bool = False,
                  projections: bool = False) -> ModelOutputs:
    """Run ``model`` on ``batch`` (labels ignored) and return the requested outputs."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    capture = ProjectionCapture(model) if projections else None
    try:
        out = model(**inputs, output_hidden_states=hidden, output_attentions=attentions)
        return ModelOutputs.from_hf(out, inputs["attention_mask"], capture)
    finally:
        if capture is not None:
            capture.remove()
