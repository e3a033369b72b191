"""The cubic sparsity schedule of gradual pruning (Zhu & Gupta, 2017, "To prune, or not to prune").

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3     for t0 <= t <= t0 + n*dt

Sparsity stays at s_i during a warm-up (t < t0), rises fast at first and slowly near the end
(when few weights are left, each one matters more), and stays at s_f for a cool-down of the last
steps, so the network recovers at its final sparsity. Movement pruning (Sanh et al., 2020) uses the
same schedule for its kept fraction and its score threshold. Warm-up and cool-down are fractions
of the training steps, so the schedule follows ``--max-steps`` / ``--epochs`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimbert.config import check_range
from slimbert.errors import ConfigError


def cubic_progress(step: int, start: int, end: int) -> float:
    """Fraction p in [0, 1] of the way from s_i to s_f at ``step``: 1 - (1 - (t - t0) / (end - t0))^3."""
    if step <= start:
        return 0.0
    if step >= end:
        return 1.0
    return 1.0 - (1.0 - (step - start) / (end - start)) ** 3


def cubic_sparsity(step: int, initial: float, final: float, start: int, end: int) -> float:
    """Zhu & Gupta's s_t with t0 = ``start`` and t0 + n*dt = ``end``."""
    return initial + (final - initial) * cubic_progress(step, start, end)


@dataclass(frozen=True)
class CubicSchedule:
    """When sparsity rises during training (fractions of the total optimizer steps).

    ``update_every`` is Zhu & Gupta's dt: masks change every that many steps (and at the end of
    the ramp), so the network adapts between pruning events.
    """

    initial_sparsity: float = 0.0
    warmup_fraction: float = 0.1
    cooldown_fraction: float = 0.3
    update_every: int = 10

    def validate(self) -> None:
        check_range("initial_sparsity", self.initial_sparsity, 0, 1, high_inclusive=False)
        check_range("warmup_fraction", self.warmup_fraction, 0, 1)
        check_range("cooldown_fraction", self.cooldown_fraction, 0, 1)
        if self.warmup_fraction + self.cooldown_fraction >= 1:
            raise ConfigError(f"warmup_fraction + cooldown_fraction must be < 1 (the ramp needs steps), got "
                              f"{self.warmup_fraction} + {self.cooldown_fraction}")
        if self.update_every < 1:
            raise ConfigError(f"update_every must be >= 1, got {self.update_every}")

    def ramp(self, total_steps: int) -> tuple[int, int]:
        """(t0, t0 + n*dt) in optimizer steps. The ramp ends at least one step before training does,
        so the final sparsity is in force for the last update and every evaluation after it."""
        end = max(1, min(total_steps - 1, round((1 - self.cooldown_fraction) * total_steps)))
        start = min(round(self.warmup_fraction * total_steps), end - 1)
        return max(0, start), end

    def sparsity(self, step: int, total_steps: int, final: float) -> float:
        start, end = self.ramp(total_steps)
        return cubic_sparsity(step, self.initial_sparsity, final, start, end)

    def progress(self, step: int, total_steps: int) -> float:
        start, end = self.ramp(total_steps)
        return cubic_progress(step, start, end)

    def is_update_step(self, step: int, total_steps: int) -> bool:
        start, end = self.ramp(total_steps)
        return step >= end or (step >= start and (step - start) % self.update_every == 0)
