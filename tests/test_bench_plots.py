"""Experiment curves: recipe overrides, plot blocks, PNGs rendered from (synthetic) result records."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimbert.bench.experiments import load_experiment
from slimbert.bench.plots import _points, plot_results
from slimbert.errors import ConfigError
from slimbert.recipe import Recipe

from helpers import synthetic_card, synthetic_record

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "benchmarks" / "experiments").glob("*.yaml"))


def _record(series: str | None, x: float, accuracy: float, latency: float | None = 10.0, figure: str = "sparsity"):
    plot = {"figure": figure, "series": series, "x": x, "x_label": "sparsity"} if series else None
    card = synthetic_card(accuracy=accuracy, size_mb=90.0 * (1 - x / 2), latency_ms=latency)
    return synthetic_record(card, name=f"{series}-{x}", plot=plot)


def test_points_are_grouped_and_sorted():
    records = {"m90": _record("magnitude", 0.9, 0.80), "m50": _record("magnitude", 0.5, 0.88),
               "v90": _record("movement", 0.9, 0.84, latency=None), "other": _record(None, 0.0, 0.9),
               "h40": _record("heads", 0.4, 0.89, figure="heads")}
    figures = _points(records)
    assert set(figures) == {"sparsity", "heads"}
    assert [p["x"] for p in figures["sparsity"]["magnitude"]] == [0.5, 0.9]
    assert figures["sparsity"]["movement"][0]["latency_ms"] is None and figures["sparsity"]["movement"][0]["value"] == 0.84
    assert figures["heads"]["heads"][0]["baseline"] == 0.9


def test_plots_are_written(tmp_path):
    records = {f"{s}{x}": _record(s, x, 0.9 - x / 10) for s in ("magnitude", "movement") for x in (0.5, 0.7, 0.9)}
    records["h"] = _record("heads", 0.2, 0.89, figure="heads")
    paths = plot_results(records, tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["heads.png", "sparsity.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths)


def test_a_figure_without_latency_says_so_in_its_latency_panel(tmp_path, monkeypatch):
    import matplotlib.axes

    texts = []
    monkeypatch.setattr(matplotlib.axes.Axes, "text", lambda self, x, y, s, **kw: texts.append(s))
    records = {f"m{x}": _record("magnitude", x, 0.85, latency=None) for x in (0.5, 0.9)}
    [path] = plot_results(records, tmp_path)
    assert path.is_file() and texts == ["latency not measured\n(experiments run with --no-latency)"]
    plot_results({"m": _record("magnitude", 0.5, 0.85)}, tmp_path)
    assert len(texts) == 1  # measured latency: no note


def test_recipe_overrides_merge_and_validate():
    recipe = Recipe.from_dict({"steps": [{"method": "magnitude", "sparsity": 0.5, "train": {"epochs": 2.0}}]})
    swept = recipe.with_overrides({"magnitude": {"sparsity": 0.9, "train": {"learning_rate": 1e-4}}})
    cfg = swept.steps[0].config
    assert cfg.sparsity == 0.9 and cfg.train.epochs == 2.0 and cfg.train.learning_rate == 1e-4
    with pytest.raises(ConfigError, match="the recipe has no such step"):
        recipe.with_overrides({"movement": {"sparsity": 0.9}})
    with pytest.raises(ConfigError, match="sparsity must be in"):
        recipe.with_overrides({"magnitude": {"sparsity": 1.5}})


@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if "recipe_overrides" in p.read_text()], ids=lambda p: p.stem)
def test_shipped_overrides_apply(path, monkeypatch):
    monkeypatch.chdir(REPO)
    exp = load_experiment(path)
    recipe = exp.load_recipe()
    for method, fields in exp.recipe_overrides.items():
        step = next(s for s in recipe.steps if s.method == method)
        for name, value in fields.items():
            if not isinstance(value, dict):  # (YAML lists become tuples in frozen configs)
                # Step options (distill, accuracy gate) live on the step, method fields on its config.
                owner = step.config if hasattr(step.config, name) else step
                assert getattr(owner, name) == (tuple(value) if isinstance(value, list) else value)
