"""Layer matches as data (TextBrewer's idea, with named fields instead of positional lists).

``LayerMatch(teacher=4, student=2, feature="hidden", loss="mse", weight=1.0)`` says: make the
student's layer-2 output imitate the teacher's layer-4 output with an MSE loss. Layer numbers
follow ``hidden_states``: 0 is the embedding output, i (1-based) the output of layer i.
Attention and relation features use layers 1..L. Presets build the usual mappings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slimbert.errors import ConfigError

Feature = Literal["hidden", "embedding", "attention", "attention_relation", "value_relation"]
LOSSES: dict[str, tuple[str, ...]] = {
    "hidden": ("mse", "cosine", "pkd"),
    "embedding": ("mse", "cosine"),
    "attention": ("mse", "kl"),
    "attention_relation": ("kl",),
    "value_relation": ("kl",),
}
DEFAULT_LOSS = {"hidden": "mse", "embedding": "mse", "attention": "mse", "attention_relation": "kl",
                "value_relation": "kl"}
PRESETS = ("uniform", "pkd-skip", "pkd-last", "last")


@dataclass(frozen=True)
class LayerMatch:
    teacher: int = 0
    student: int = 0
    feature: Feature = "hidden"
    loss: str | None = None  # default per feature (see DEFAULT_LOSS)
    weight: float = 1.0

    def validate(self) -> None:
        if self.loss is not None and self.loss not in LOSSES[self.feature]:
            raise ConfigError(f"loss {self.loss!r} does not apply to feature {self.feature!r}; "
                              f"use one of {', '.join(LOSSES[self.feature])}")
        if self.weight < 0:
            raise ConfigError(f"weight must be >= 0, got {self.weight}")

    @property
    def loss_name(self) -> str:
        return self.loss or DEFAULT_LOSS[self.feature]

    def check_layers(self, teacher_layers: int, student_layers: int) -> None:
        """Raise a clear error when a layer number is outside either model."""
        if self.feature == "embedding":
            return
        low = 0 if self.feature == "hidden" else 1
        for who, index, n in (("teacher", self.teacher, teacher_layers), ("student", self.student, student_layers)):
            if not low <= index <= n:
                what = "hidden-state indices 0 (embeddings) .." if low == 0 else "layers 1.."
                raise ConfigError(
                    f"{self.feature} match: {who} layer {index} is out of range; the {who} has {n} layers, "
                    f"valid {what}{n}"
                )


def preset_matches(preset: str, teacher_layers: int, student_layers: int, feature: Feature = "hidden",
                   loss: str | None = None, weight: float = 1.0) -> list[LayerMatch]:
    """Standard mappings of student layers 1..n to teacher layers 1..L.

    * ``uniform``: student layer j <- teacher layer j * L/n (TinyBERT's g(m) = m * N/M), plus
      the embeddings for hidden features.
    * ``pkd-skip``: PKD-Skip, every (L/n)-th teacher layer, intermediate layers only (the last is
      covered by the logits).
    * ``pkd-last``: PKD-Last, the last n-1 intermediate teacher layers.
    * ``last``: the last layer only (MiniLM).
    """
    L, n = teacher_layers, student_layers
    if n < 1 or L < n:
        raise ConfigError(f"preset {preset!r} needs 1 <= student layers <= teacher layers, got {n} and {L}")
    if preset == "uniform":
        pairs = [(j * L // n, j) for j in range(1, n + 1)]
        if feature == "hidden":
            pairs = [(0, 0)] + pairs
    elif preset == "pkd-skip":
        step = L // n
        pairs = [(j * step, j) for j in range(1, n)]
    elif preset == "pkd-last":
        pairs = [(L - n + j, j) for j in range(1, n)]
    elif preset == "last":
        pairs = [(L, n)]
    else:
        raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    return [LayerMatch(teacher=t, student=s, feature=feature, loss=loss, weight=weight) for t, s in pairs]
