"""Analytical FLOPs per example, from the architecture table (survey section 2's accounting).

Counts multiply-accumulates x 2 of every matrix product, as ``torch.utils.flop_counter`` does
(a test checks the two agree); element-wise work (softmax, GELU, LayerNorm, residual adds) is
not counted. Shapes are read from the current modules, so pruned layers with their own head
counts and FFN widths are counted as they are.

Per layer, at sequence length T with hidden size d, H heads of size d_h and FFN width I:
q/k/v ``3 * 2*T*d*(H*d_h)``, scores and context ``2 * 2*T*T*(H*d_h)``, output projection
``2*T*(H*d_h)*d``, FFN ``2 * 2*T*d*I``. The task head runs on one token.
"""

from __future__ import annotations

from torch import nn

from slimbert.models.structure import LayerView, arch_of, head_modules, layer_views

COMPONENTS = (
    "embeddings",
    "attention_qkv",
    "attention_scores",
    "attention_output",
    "ffn",
    "layernorm_residual",
    "pooler_classifier",
)


def linear_flops_per_token(module: nn.Module) -> int:
    """2 * in * out for a linear; compressed kinds report their own (e.g. low-rank factors)."""
    if hasattr(module, "flops_per_token"):
        return int(module.flops_per_token())
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    return sum(linear_flops_per_token(m) for m in module.children())


def flops_breakdown(model: nn.Module, seq_len: int) -> dict[str, int]:
    """FLOPs per example at ``seq_len``, by component (see :data:`COMPONENTS`).

    Non-transformer students report their own components (e.g. "recurrent").
    """
    if not arch_of(model).is_transformer:
        return model.flops_breakdown(seq_len)
    out = dict.fromkeys(COMPONENTS, 0)
    for view in layer_views(model):
        for component, value in layer_flops(view, seq_len).items():
            out[component] += value
    out["pooler_classifier"] = sum(linear_flops_per_token(m) for m in head_modules(model).values())
    return out


def layer_flops(view: LayerView, t: int) -> dict[str, int]:
    """FLOPs of one encoder layer on one example of ``t`` tokens, by component."""
    q, k, v = view.query, view.key, view.value
    return {
        "attention_qkv": t * (linear_flops_per_token(q) + linear_flops_per_token(k) + linear_flops_per_token(v)),
        # QK^T: (T, d_h) x (d_h, T) per head; AV: (T, T) x (T, d_h) per head.
        "attention_scores": 2 * t * t * q.out_features + 2 * t * t * v.out_features,
        "attention_output": t * linear_flops_per_token(view.attn_out),
        "ffn": t * (linear_flops_per_token(view.ffn_in) + linear_flops_per_token(view.ffn_out)),
    }


def adaptive_flops(model: nn.Module, tokens: list[int], exit_layer: int, exits_run: int, exit_head_flops: int) -> int:
    """FLOPs of the path one example really took through the adaptive runner: layer i on ``tokens[i]`` tokens
    for the ``exit_layer`` layers it ran, ``exits_run`` exit heads evaluated, and the task head if it ran every
    layer."""
    views = layer_views(model)
    total = sum(sum(layer_flops(views[i], tokens[i]).values()) for i in range(exit_layer))
    total += exits_run * exit_head_flops
    if exit_layer == len(views):
        total += sum(linear_flops_per_token(m) for m in head_modules(model).values())
    return total


def flops_per_example(model: nn.Module, seq_len: int = 128) -> int:
    """Total matrix-product FLOPs of one forward pass of one example at ``seq_len``."""
    return sum(flops_breakdown(model, seq_len).values())
