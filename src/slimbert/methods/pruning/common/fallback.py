"""Milder configs for the accuracy gate's ``on_exceed: fallback``: prune less, a fixed step at a time.

Each try runs the whole step again from its input model (importance scores, rounds, training), so a
fallback costs up to ``ceil(value / step)`` more runs of the step; the method's docstring says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from slimbert.config import MethodConfig

C = TypeVar("C", bound=MethodConfig)
STEP = 0.1  # of a fraction or sparsity


def less(cfg: C, *fields: str, step: float = STEP, floor: float = 0.0) -> C | None:
    """``cfg`` with each of ``fields`` lowered by ``step``; None when the first would reach ``floor``."""
    first = getattr(cfg, fields[0])
    if first is None or first - step <= floor + 1e-9:
        return None
    return replace(cfg, **{f: round(getattr(cfg, f) - step, 6) for f in fields if getattr(cfg, f) is not None})


def fewer(cfg: C, field: str, floor: int = 0) -> C | None:
    """``cfg`` with the integer ``field`` one lower; None when it would reach ``floor``."""
    value = getattr(cfg, field)
    return replace(cfg, **{field: value - 1}) if value - 1 > floor else None
