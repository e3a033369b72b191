"""The survey's practical findings (Ganesh et al., TACL 2021, section 5), each answered from measured results.

Every answer is computed from the result records handed in (never written by hand): change the results and the
verdict and its cited numbers change with them. A finding whose experiments are absent is "not measured", with
what would measure it. Records are recognised by their recipes' steps (methods and their settings), not by file
names, so a user's own results directory works too.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Callable

from slimbert.bench.records import BenchRecord
from slimbert.bench.survey import drop_points, families, methods_of, speedup
from slimbert.report.card import ReportCard

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not measured"
UNSTRUCTURED = ("magnitude", "movement", "lottery-ticket")
INT8 = ("dynamic-int8", "static-int8", "qat-int8")


@dataclass(frozen=True)
class Finding:
    key: str
    claim: str
    verdict: str  # HOLDS | FAILS | UNKNOWN
    evidence: str


def _cards(records: dict[str, BenchRecord], task: str | None = None) -> dict[str, ReportCard]:
    return {n: r.card for n, r in sorted(records.items())
            if r.card is not None and r.card.compressed.metrics and (task is None or r.card.task == task)}


def _single(card: ReportCard, method: str) -> dict | None:
    """The step config when the recipe is that one method alone."""
    steps = card.recipe.get("steps", [])
    return steps[0] if len(steps) == 1 and steps[0]["method"] == method else None


def _pts(card: ReportCard) -> str:
    metric = card.main_metric
    return f"{card.compressed.metric(metric) * 100:.2f} ({-drop_points(card):+.2f})"


def ffn_dominates(records) -> Finding:
    claim = "(a) The feed-forward networks hold most of the encoder's parameters and compute."
    shares = {}
    for kind, method in (("FFN", "prune-ffn"), ("attention", "prune-heads")):
        found = [(step["fraction"], name, card) for name, card in _cards(records).items()
                 if (step := _single(card, method)) and step.get("fraction")]
        if found:  # the largest fraction removed: the least noisy extrapolation
            f, name, card = max(found, key=lambda t: t[0])
            shares[kind] = ((card.baseline.params.total - card.compressed.params.total) / f,
                            (card.baseline.flops - card.compressed.flops) / f, name)
    if len(shares) < 2:
        return Finding("a", claim, UNKNOWN, "needs one prune-ffn and one prune-heads result (e.g. ffn-50, heads-40)")
    (fp, ff, fn), (ap, af, an) = shares["FFN"], shares["attention"]
    verdict = HOLDS if fp > ap and ff > af else FAILS
    return Finding("a", claim, verdict,
                   f"extrapolated from what pruning a fraction removed: FFN {fp / 1e6:.1f}M parameters, "
                   f"{ff / 1e9:.2f} GFLOPs ({fn}); attention {ap / 1e6:.1f}M parameters, {af / 1e9:.2f} GFLOPs ({an})")


def eight_bit_lossless(records) -> Finding:
    claim = "(b) 8-bit quantization is nearly lossless (within 1 point)."
    found = [(n, c) for n, c in _cards(records).items() if any(_single(c, m) for m in INT8)]
    if not found:
        return Finding("b", claim, UNKNOWN, "needs dynamic-int8, static-int8 or qat-int8 results")
    worst = max(drop_points(c) for _, c in found)
    return Finding("b", claim, HOLDS if worst <= 1.0 else FAILS,
                   "; ".join(f"{n}: {_pts(c)}" for n, c in found) + f"; largest drop {worst:.2f} points")


def size_not_speed(records) -> Finding:
    claim = ("(c) Quantization and unstructured sparsity give size, not speed, on a commodity CPU (PyTorch, the "
             "framework they are applied in; 'not speed': a median batch-1 speed-up below 1.3x).")
    groups = {"unstructured sparsity": [], "quantization": []}
    for name, card in _cards(records).items():
        methods = set(methods_of(card))
        group = ("unstructured sparsity" if methods and methods <= set(UNSTRUCTURED)
                 else "quantization" if families(card) == ["quantization"] else None)
        s = speedup(card, "pytorch", "b1s128")
        if group and s is not None:
            groups[group].append((name, card.baseline.size_mb / card.compressed.size_mb, s))
    measured = {g: v for g, v in groups.items() if v}
    if not measured:
        return Finding("c", claim, UNKNOWN, "needs timed quantization or unstructured pruning results")
    parts, holds = [], True
    for group, values in measured.items():
        size, speed = median(v[1] for v in values), median(v[2] for v in values)
        holds &= speed < 1.3
        parts.append(f"{group}: median size {size:.2f}x smaller, median PyTorch b1 speed-up {speed:.2f}x "
                     f"({len(values)} results)")
    return Finding("c", claim, HOLDS if holds else FAILS, "; ".join(parts) +
                   " (slimbert's int8 runs faster on ONNX Runtime / OpenVINO: see the table's speed-ups)")


def heads_can_go(records) -> Finding:
    claim = "(d) Many attention heads can be removed at a small loss (30% or more within 1 point)."
    found = sorted(((c.recipe["steps"][0]["fraction"], n, c) for n, c in _cards(records).items()
                    if _single(c, "prune-heads")), key=lambda t: t[0])
    if not found:
        return Finding("d", claim, UNKNOWN, "needs prune-heads results at several fractions")
    within = [f for f, _, c in found if drop_points(c) <= 1.0]
    best = max(within, default=0.0)
    return Finding("d", claim, HOLDS if best >= 0.3 else FAILS,
                   f"largest fraction of heads removed within 1 point: {best:.0%}; "
                   + "; ".join(f"{n} ({f:.0%}): {_pts(c)}" for f, n, c in found))


def top_beats_bottom(records) -> Finding:
    claim = "(e) Dropping the top layers hurts less than dropping the bottom ones."
    by = {}
    for name, card in _cards(records).items():
        step = _single(card, "drop-layers")
        if step and step.get("strategy") in ("top", "bottom"):
            by[(card.task, step["num_drop"], step["strategy"])] = (name, card)
    return _compare_pairs("e", claim, by, "top", "bottom", strict=False,
                          missing="needs drop-layers results with strategy top and bottom, same count")


def _compare_pairs(key: str, claim: str, by: dict[tuple, tuple], first: str, second: str, missing: str,
                   strict: bool = True) -> Finding:
    """``by``: ``{(task, setting, kind): (name, card)}``. The finding holds when ``first`` loses less than (or, not
    ``strict``, at most as much as) ``second`` at every (task, setting) both were measured at."""
    pairs = [(by[(t, s, first)], by[(t, s, second)]) for (t, s, k) in by if k == first and (t, s, second) in by]
    if not pairs:
        return Finding(key, claim, UNKNOWN, missing)
    holds = all(drop_points(a[1]) < drop_points(b[1]) or (not strict and drop_points(a[1]) == drop_points(b[1]))
                for a, b in pairs)
    return Finding(key, claim, HOLDS if holds else FAILS,
                   "; ".join(f"{a[0]} {_pts(a[1])} vs {b[0]} {_pts(b[1])}" for a, b in pairs))


def _student_layers(card: ReportCard) -> int | None:
    return next((s.get("num_layers") for s in card.recipe.get("steps", []) if s["method"] == "student"), None)


def _intermediate(step: dict) -> bool:
    return bool(step.get("matches")) or step.get("preset") is not None


def intermediate_beats_logits(records) -> Finding:
    claim = "(f) Distilling intermediate layers beats distilling the logits alone (same student size)."
    best: dict[tuple, tuple] = {}
    for name, card in _cards(records).items():
        distills = [s for s in card.recipe.get("steps", []) if s["method"] == "distill"]
        layers = _student_layers(card)
        if not distills or layers is None or set(methods_of(card)) - {"student", "distill"}:
            continue
        kind = "intermediate" if any(_intermediate(s) for s in distills) else "logits"
        key = (card.task, layers, kind)
        if key not in best or drop_points(card) < drop_points(best[key][1]):
            best[key] = (name, card)
    return _compare_pairs("f", claim, best, "intermediate", "logits",
                          missing="needs student + distill results with and without layer matches")


def movement_beats_magnitude(records) -> Finding:
    claim = "(g) Movement pruning beats magnitude pruning at high sparsity (80% or more)."
    by = {}
    for name, card in _cards(records).items():
        for method in ("movement", "magnitude"):
            step = _single(card, method)
            if step and step.get("sparsity", 0) >= 0.8:
                by[(card.task, step["sparsity"], method)] = (name, card)
    return _compare_pairs("g", claim, by, "movement", "magnitude",
                          missing="needs movement and magnitude results at the same sparsity >= 80%")


def _best_speed(card: ReportCard) -> float | None:
    values = [s for rt in ("pytorch", "onnxruntime", "openvino") if (s := speedup(card, rt, "b1s128"))]
    return max(values) if values else None


def methods_compound(records) -> Finding:
    claim = ("(h) Methods compound: a recipe combining families is faster than any single family's result of at "
             "least its accuracy (a drop at most 0.5 point larger).")
    single: dict[str, list[tuple[float, float, str]]] = {}  # task -> (speed, drop, name)
    compound: list[tuple[float, float, str, str]] = []  # (speed, drop, name, task)
    for name, card in _cards(records).items():
        s = _best_speed(card)
        if s is None:
            continue
        if len(families(card)) > 1:
            compound.append((s, drop_points(card), name, card.task))
        else:
            single.setdefault(card.task, []).append((s, drop_points(card), name))
    if not single or not compound:
        return Finding("h", claim, UNKNOWN, "needs timed single-family and multi-family results")

    def rival(drop: float, task: str):
        """The fastest single-family result of the same task at most 0.5 point less accurate."""
        return max((r for r in single.get(task, []) if r[1] <= drop + 0.5), default=None)

    wins = []
    for speed, drop, name, task in sorted(compound, reverse=True):
        best = rival(drop, task)
        if best is None or speed > best[0]:
            wins.append((speed, drop, name, best))
    if not wins:
        speed, drop, name, task = max(compound)
        best = rival(drop, task)
        return Finding("h", claim, FAILS, f"fastest compound: {name} {speed:.2f}x (drop {drop:.2f}); a single family "
                       f"does better at that accuracy: {best[2]} {best[0]:.2f}x (drop {best[1]:.2f})")
    speed, drop, name, best = wins[0]
    rival = f"{best[2]} {best[0]:.2f}x (drop {best[1]:.2f})" if best else "none that accurate"
    return Finding("h", claim, HOLDS, f"{name}: {speed:.2f}x over PyTorch fp32 (b1, its fastest runtime), drop "
                   f"{drop:.2f}; fastest single family at that accuracy: {rival}")


FINDINGS: tuple[Callable[[dict[str, BenchRecord]], Finding], ...] = (
    ffn_dominates, eight_bit_lossless, size_not_speed, heads_can_go, top_beats_bottom, intermediate_beats_logits,
    movement_beats_magnitude, methods_compound)


def answer_findings(records: dict[str, BenchRecord]) -> list[Finding]:
    return [finding(records) for finding in FINDINGS]
