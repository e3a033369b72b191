"""Temporary multiplicative gates on the inputs of linears: head gates and neuron gates.

A gate multiplies a group of a linear's input features by one scalar. On the input of the
attention output projection, a group of d_h features is one head's context vector, so the gate
is Michel et al.'s (2019) head gate xi_h; on the input of the FFN output linear, a group of one
feature is one intermediate neuron. The gates are forward pre-hooks: the model's forward is not
forked, and removing the hooks leaves the model untouched.

Uses: gradients w.r.t. the gates give importance scores (|dL/dxi_h| for heads; for neurons,
dL/dg_j = sum over tokens of activation x gradient, the first-order Taylor score), and 0/1
gates give a *masked* model whose outputs equal the physically pruned one (the surgery tests).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from slimbert.models.structure import layer_views


class InputGates:
    """Gates ``gates[i]`` of shape (n_i,) on the input (..., n_i * group) of ``linears[i]``.

    ``requires_grad`` makes the gates leaf tensors whose ``.grad`` collects dL/dgate.
    Always call :meth:`remove` (or use as a context manager) before saving or copying the model.
    """

    def __init__(self, linears: Sequence[nn.Module], group: int, requires_grad: bool = False):
        self.group = group
        self.gates: list[torch.Tensor] = []
        self._handles = []
        for linear in linears:
            n = linear.in_features // group
            gate = torch.ones(n, device=linear.weight.device, requires_grad=requires_grad)
            self.gates.append(gate)
            self._handles.append(linear.register_forward_pre_hook(self._hook(gate)))

    def _hook(self, gate: torch.Tensor):
        group = self.group

        def pre_hook(module, args):
            x = args[0]  # (..., n * group)
            gated = (x.unflatten(-1, (-1, group)) * gate[:, None].to(x.dtype)).flatten(-2)
            return (gated, *args[1:])

        return pre_hook

    def set_masks(self, masks: Sequence[torch.Tensor]) -> None:
        """Set every gate to a given 0/1 (or any) vector, e.g. the keep-masks of heads to prune."""
        with torch.no_grad():
            for gate, mask in zip(self.gates, masks):
                gate.copy_(mask)

    def grads(self) -> list[torch.Tensor]:
        return [g.grad.detach().clone() if g.grad is not None else torch.zeros_like(g) for g in self.gates]

    def zero_grad(self) -> None:
        for g in self.gates:
            g.grad = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "InputGates":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def head_gates(model: nn.Module, requires_grad: bool = False) -> InputGates:
    """One gate per attention head of every layer (on the attention output projection's input)."""
    views = layer_views(model)
    return InputGates([v.attn_out for v in views], views[0].head_size, requires_grad)


def neuron_gates(model: nn.Module, requires_grad: bool = False) -> InputGates:
    """One gate per FFN intermediate neuron of every layer (on the FFN output linear's input)."""
    return InputGates([v.ffn_out for v in layer_views(model)], 1, requires_grad)
