"""``slimbert profile``: where parameters, memory, FLOPs and time go (the survey's section 2).

Components: embeddings; attention q/k/v projections; attention scores + softmax + context;
attention output projection; FFN (both linears and the activation); LayerNorm + residual (and
dropout, the rest of each layer); pooler + classifier. Time is measured with forward hooks around
the modules the architecture table names (median over runs); hook overhead is a few percent.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from slimbert.measure.flops import COMPONENTS, flops_breakdown
from slimbert.measure.latency import random_inputs
from slimbert.measure.size import MB
from slimbert.models.structure import embedding_module, encoder_layers, head_modules, layer_views

LABELS = {
    "embeddings": "Embeddings",
    "attention_qkv": "Attention q/k/v projections",
    "attention_scores": "Attention scores + softmax + context",
    "attention_output": "Attention output projection",
    "ffn": "Feed-forward (FFN)",
    "layernorm_residual": "LayerNorm + residual",
    "pooler_classifier": "Pooler + classifier",
}


def _params(modules: list[nn.Module]) -> int:
    seen: set[int] = set()
    total = 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def _bytes(modules: list[nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def component_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The modules holding each component's weights."""
    views = layer_views(model)
    return {
        "embeddings": [embedding_module(model)],
        "attention_qkv": [m for v in views for m in (v.query, v.key, v.value)],
        "attention_scores": [],
        "attention_output": [v.attn_out for v in views],
        "ffn": [m for v in views for m in (v.ffn_in, v.ffn_out)],
        "layernorm_residual": [m for v in views for m in (v.attn_norm, v.ffn_norm)],
        "pooler_classifier": list(head_modules(model).values()),
    }


class _Timer:
    """Accumulates wall time of module forwards through pre/post hooks."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.activation_bytes: dict[str, int] = defaultdict(int)
        self._start: dict[int, float] = {}
        self.handles = []

    def watch(self, module: nn.Module, key: str) -> None:
        def pre(mod, args):
            self._start[id(mod)] = time.perf_counter()

        def post(mod, args, output):
            self.seconds[key] += time.perf_counter() - self._start.pop(id(mod))
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor):
                self.activation_bytes[key] += out.numel() * out.element_size()

        self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _time_once(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, float], dict[str, int]]:
    timer = _Timer()
    views = layer_views(model)
    timer.watch(embedding_module(model), "embeddings")
    for v in views:
        i = v.index
        timer.watch(v.layer, f"layer{i}")
        timer.watch(v.self_attention, f"self{i}")
        for role in ("query", "key", "value"):
            timer.watch(v.module(role), f"qkv{i}")
        timer.watch(v.attn_out, f"out{i}")
        for role in ("ffn_in", "ffn_act", "ffn_out"):
            timer.watch(v.module(role), f"ffn{i}")
    for name, m in head_modules(model).items():
        timer.watch(m, "head")
    start = time.perf_counter()
    with torch.inference_mode():
        model(**inputs)
    total = time.perf_counter() - start
    timer.remove()
    s, act = timer.seconds, timer.activation_bytes
    out = dict.fromkeys(COMPONENTS, 0.0)
    out["embeddings"] = s["embeddings"]
    for v in views:
        i = v.index
        out_inside_self = v.module_path("attn_out").startswith(v.module_path("self_attention") + ".")
        out["attention_qkv"] += s[f"qkv{i}"]
        out["attention_scores"] += s[f"self{i}"] - s[f"qkv{i}"] - (s[f"out{i}"] if out_inside_self else 0.0)
        out["attention_output"] += s[f"out{i}"]
        out["ffn"] += s[f"ffn{i}"]
        out["layernorm_residual"] += (s[f"layer{i}"] - s[f"self{i}"] - s[f"ffn{i}"]
                                      - (0.0 if out_inside_self else s[f"out{i}"]))
    out["pooler_classifier"] = s["head"]
    out["other"] = total - sum(out.values())  # mask creation, framework overhead between modules
    activations = {
        "embeddings": act["embeddings"],
        "attention_qkv": sum(act[f"qkv{v.index}"] for v in views),
        "attention_output": sum(act[f"out{v.index}"] for v in views),
        "ffn": sum(act[f"ffn{v.index}"] for v in views),
        "pooler_classifier": act["head"],
    }
    return out, activations


def profile_model(model: nn.Module, seq_len: int = 128, batch: int = 1, runs: int = 10, warmup: int = 2,
                  threads: int | None = None, input_names=("input_ids", "attention_mask", "token_type_ids")) -> dict:
    """``{"components": {name: {params, params_share, memory_mb, activation_mb, flops, flops_share, time_ms, time_share}}}``."""
    if threads:
        torch.set_num_threads(threads)
    model.eval()
    inputs = random_inputs(model.config.vocab_size, tuple(input_names), batch, seq_len)
    for _ in range(warmup):
        _time_once(model, inputs)
    samples = [_time_once(model, inputs) for _ in range(runs)]
    times = {k: statistics.median(s[0][k] for s in samples) * 1e3 for k in samples[0][0]}
    activations = samples[0][1]
    modules = component_modules(model)
    flops = flops_breakdown(model, seq_len)
    # Attention probabilities (B, H, T, T) are the one large activation with no module output of their own.
    n_heads = sum(v.num_heads for v in layer_views(model))
    activations["attention_scores"] = batch * n_heads * seq_len * seq_len * 4
    total_params = _params([model])
    total_flops = sum(flops.values())
    total_time = sum(times.values())
    components = {}
    for name in COMPONENTS:
        p = _params(modules[name])
        components[name] = {
            "label": LABELS[name],
            "params": p,
            "params_share": p / total_params,
            "memory_mb": _bytes(modules[name]) / MB,
            "activation_mb": activations.get(name, 0) / MB,
            "flops": flops[name],
            "flops_share": flops[name] / total_flops if total_flops else 0.0,
            "time_ms": times[name],
            "time_share": times[name] / total_time,
        }
    components["other"] = {"label": "Other (masks, framework overhead)", "params": 0, "params_share": 0.0,
                           "memory_mb": 0.0, "activation_mb": 0.0, "flops": 0, "flops_share": 0.0,
                           "time_ms": times["other"], "time_share": times["other"] / total_time}
    return {
        "seq_len": seq_len,
        "batch": batch,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "total": {"params": total_params, "flops": total_flops, "time_ms": total_time,
                  "layers": len(encoder_layers(model))},
        "components": components,
    }


def render_profile_markdown(profile: dict) -> str:
    lines = [
        f"Profile at batch {profile['batch']} x sequence length {profile['seq_len']} "
        f"({profile['threads']} threads, median of {profile['runs']} runs)",
        "",
        "| component | params | % params | weights MB | activations MB | GFLOPs | % FLOPs | time ms | % time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in profile["components"].values():
        lines.append(
            f"| {c['label']} | {c['params']:,} | {c['params_share'] * 100:.1f} | {c['memory_mb']:.1f} | "
            f"{c['activation_mb']:.2f} | {c['flops'] / 1e9:.3f} | {c['flops_share'] * 100:.1f} | "
            f"{c['time_ms']:.2f} | {c['time_share'] * 100:.1f} |"
        )
    t = profile["total"]
    lines.append(f"| **total** | {t['params']:,} | 100 | | | {t['flops'] / 1e9:.3f} | 100 | {t['time_ms']:.2f} | 100 |")
    return "\n".join(lines) + "\n"


def plot_profile(profile: dict, path: str | Path) -> Path:
    """A grouped bar chart of the parameter, FLOP and time shares per component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    comps = list(profile["components"].values())
    labels = [c["label"] for c in comps]
    x = np.arange(len(comps))
    fig, ax = plt.subplots(figsize=(11, 5))
    for i, (key, name) in enumerate((("params_share", "parameters"), ("flops_share", "FLOPs"), ("time_share", "time"))):
        ax.bar(x + (i - 1) * 0.27, [c[key] * 100 for c in comps], 0.27, label=name)
    ax.set_xticks(x, labels, rotation=25, ha="right")
    ax.set_ylabel("share of total (%)")
    ax.set_title(f"Where a forward pass goes (batch {profile['batch']}, seq {profile['seq_len']})")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
