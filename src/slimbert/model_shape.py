"""What a recipe can know about a model before any work: its shape, read from the config alone.

``slimbert validate RECIPE --model M`` and ``compress`` (before its first step) walk the recipe's
steps over a :class:`ModelShape`: each method's config checks the shape it will receive
(:meth:`slimbert.config.MethodConfig.plan`) and returns the shape it will hand on, so a step that
cannot apply (more layers dropped than the model has, a layer match beyond the teacher's depth, a
block size that does not tile the matrices) fails before an earlier step has spent its training.

Where the outcome depends on data (which heads or neurons go), the per-layer counts after a step
are an even spread of the removed total: exact totals, estimated layout, and ``uniform_layers``
says whether every layer still has the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelShape:
    """Shapes of an encoder model (B, T aside): L layers of width d, heads and FFN widths per layer."""

    model_type: str
    is_transformer: bool
    layers: int
    hidden: int
    head_size: int
    heads: tuple[int, ...]  # per layer
    intermediate: tuple[int, ...]  # per layer
    vocab_size: int
    max_positions: int | None = None
    compressed_linears: bool = False  # encoder linears are no longer plain float nn.Linear (quantized, or stored sparse)
    uniform_layers: bool = True  # every layer has the same head count and FFN width
    factored_linears: bool = False  # some encoder linears are low-rank factor pairs (float, but not one matrix)
    shared_layers: bool = False  # some encoder layers share modules (ALBERT-style cross-layer sharing)
    embedding_factor_dim: int | None = None  # E of ALBERT-factored word embeddings (V x E then E x d); None: V x d
    embedding_rows: int | None = None  # rows kept by vocabulary trimming; None: untrimmed
    exit_heads: bool = False  # early-exit heads after the layers (steps that change layers cannot follow)

    @property
    def total_heads(self) -> int:
        return sum(self.heads)

    @property
    def total_neurons(self) -> int:
        return sum(self.intermediate)

    def keep_layers(self, indices: list[int]) -> "ModelShape":
        """The shape after keeping the 0-based layers ``indices``."""
        return replace(self, layers=len(indices), heads=tuple(self.heads[i] for i in indices),
                       intermediate=tuple(self.intermediate[i] for i in indices))

    def remove_heads(self, count: int) -> "ModelShape":
        return replace(self, heads=spread_removal(self.heads, count), uniform_layers=False)

    def remove_neurons(self, count: int) -> "ModelShape":
        return replace(self, intermediate=spread_removal(self.intermediate, count), uniform_layers=False)


def spread_removal(sizes: tuple[int, ...], count: int) -> tuple[int, ...]:
    """``count`` units removed from ``sizes`` in proportion (every layer keeps one): an estimate of the layout."""
    total = sum(sizes)
    left = [max(1, s - round(count * s / total)) if total else s for s in sizes]
    excess = (total - count) - sum(left)  # rounding: give back or take away one unit at a time
    i = 0
    while excess and sizes:
        j = i % len(left)
        if excess > 0 and left[j] < sizes[j]:
            left[j] += 1
            excess -= 1
        elif excess < 0 and left[j] > 1:
            left[j] -= 1
            excess += 1
        i += 1
        if i > 4 * total + 4:
            break
    return tuple(left)
