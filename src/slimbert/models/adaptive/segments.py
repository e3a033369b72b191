"""The model cut into the segments the adaptive runner drives, on PyTorch.

A segment set answers four calls (the ONNX Runtime set in :mod:`slimbert.export.onnx_segments` answers the same):

* ``embed(inputs)``: input ids (B, T) (+ token types) -> hidden (B, T, d)
* ``layer(i, hidden, mask)``: hidden (B, T, d), key mask (B, T) -> hidden (B, T, d) and, when token dropping
  needs it, the attention each token received (B, T) (see :func:`~.token_dropping.significance`)
* ``exit(i, hidden, mask)``: layer i's exit head -> logits (B, C)
* ``head(hidden)``: the model's own task head -> logits (B, C)

The layers are the model's own modules, called one by one: nothing of the model is forked.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from slimbert.models.adaptive.exit_heads import exit_heads_of
from slimbert.models.adaptive.token_dropping import significance
from slimbert.models.structure import arch_of, classify, embedding_module, encoder_layers, layer_views


class Segments(Protocol):
    num_layers: int
    exit_layers: tuple[int, ...]  # layers with an exit head (the last layer exits through the task head)

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def layer(self, i: int, hidden: torch.Tensor, mask: torch.Tensor,
              want_significance: bool) -> tuple[torch.Tensor, torch.Tensor | None]: ...
    def exit(self, i: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...
    def head(self, hidden: torch.Tensor) -> torch.Tensor: ...


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Key mask (B, T) of 1/0 -> (B, 1, T, T): 0 where attended, the dtype's minimum where padding (added to
    the attention scores, as the model's own forward does).

    Written as expand -> invert -> masked fill on purpose: exported to ONNX, this is one of the mask patterns
    ONNX Runtime's attention fusion recognises (the SDPA one), so a layer segment's attention fuses into one
    ``Attention`` op like the full model's. The shorter ``(1 - mask) * min`` is not recognised: its ``Mul``
    sits beside the score scaling's ``Mul`` and the fusion takes the wrong one.
    """
    length = mask.shape[-1]
    expanded = mask[:, None, None, :].expand(mask.shape[0], 1, length, length).to(dtype)  # (B, 1, T, T)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def _run_capturing_attention(layer: nn.Module, attention: nn.Module, hidden: torch.Tensor,
                             mask4d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one layer and keep its attention probabilities (B, H, T, T): eager attention returns them as the
    self-attention module's second output. The hook lives for this call only, so no hook stays on the model."""
    captured: list[torch.Tensor] = []
    handle = attention.register_forward_hook(lambda module, args, output: captured.append(output[1]))
    try:
        out = layer(hidden, attention_mask=mask4d)
    finally:
        handle.remove()
    if not captured or captured[0] is None:
        raise RuntimeError("the attention probabilities were not returned: token dropping needs eager attention")
    return out, captured[0]


class TorchSegments:
    """Segments of a PyTorch task model (with its ``exit_heads`` when it has them). ``capture_attention``
    switches the model to eager attention, which token dropping's significance needs."""

    def __init__(self, model: nn.Module, capture_attention: bool = False):
        self.model = model
        self.arch = arch_of(model)
        self.layers = encoder_layers(model)
        self.num_layers = len(self.layers)
        heads = exit_heads_of(model)
        self.exit_heads = heads
        self.exit_layers = tuple(range(len(heads))) if heads is not None else ()
        self.attention = [view.self_attention for view in layer_views(model)]
        if capture_attention and getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")  # only eager attention returns its probabilities

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = {k: v for k, v in inputs.items() if k in ("input_ids", "token_type_ids") and k in self.arch.inputs}
        return embedding_module(self.model)(**feeds)  # (B, T, d)

    def layer(self, i: int, hidden: torch.Tensor, mask: torch.Tensor,
              want_significance: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask4d = additive_mask(mask, hidden.dtype)
        if not want_significance:
            out = self.layers[i](hidden, attention_mask=mask4d)
            return (out[0] if isinstance(out, tuple) else out), None  # (B, T, d)
        out, probs = _run_capturing_attention(self.layers[i], self.attention[i], hidden, mask4d)
        return (out[0] if isinstance(out, tuple) else out), significance(probs, mask)

    def exit(self, i: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.exit_heads.logits(i, hidden, mask)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        return classify(self.model, hidden)

