"""Experiment files (``benchmarks/experiments/*.yaml``): what to run, declared as data.

    name: dynamic-int8-minilm-sst2
    kind: compress                      # or finetune
    model: runs/teacher-minilm-sst2     # or config: configs/bert-base-uncased.json (+ tokenizer:)
    start_from: minilm-l6               # optional: the recipe starts here; model stays teacher and baseline
    task: sst2
    recipe: recipes/dynamic-int8.yaml
    settings: {max_eval_samples: null}  # RunSettings fields
    latency: {grid: [[1, 128], [32, 128]], budget_s: 30}
    evaluate: true                      # false for random-weight, shape-only runs
    depends_on: [teacher-minilm-sst2]   # experiments whose outputs this one reads
    recipe_overrides: {magnitude: {sparsity: 0.9}}  # merged into the recipe's steps of that method
    plot: {figure: sparsity-sst2, series: magnitude, x: 0.9, x_label: sparsity}  # a point on a curve
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from slimbert.config import build_dataclass
from slimbert.errors import ConfigError


@dataclass(frozen=True)
class LatencySpec:
    grid: tuple[tuple[int, ...], ...] = ((1, 128), (32, 128))
    budget_s: float = 30.0
    threads: int = 2


@dataclass(frozen=True)
class TrainSpec:
    eval_every: int | None = None
    grad_accum_steps: int = 1


@dataclass(frozen=True)
class PlotSpec:
    """Where an experiment's result goes in the plots (slimbert.bench.plots): a point ``x`` of the curve
    ``series`` in the PNG ``figure``."""

    figure: str
    series: str
    x: float
    x_label: str = ""


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: Literal["compress", "finetune"]
    task: str
    model: str | None = None
    config: str | None = None
    tokenizer: str | None = None
    recipe: str | None = None
    start_from: str | None = None
    settings: dict[str, int | float | str | None] = field(default_factory=dict)
    train: TrainSpec = TrainSpec()
    latency: LatencySpec = LatencySpec()
    evaluate: bool = True
    output: str | None = None
    depends_on: tuple[str, ...] = ()
    description: str = ""
    recipe_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    plot: PlotSpec | None = None

    def validate(self) -> None:
        if (self.model is None) == (self.config is None):
            raise ConfigError("give exactly one of 'model' or 'config'")
        if self.config is not None and self.tokenizer is None:
            raise ConfigError("'config' (random weights) needs a 'tokenizer' model spec")
        if self.kind == "compress" and self.recipe is None:
            raise ConfigError("a compress experiment needs a 'recipe'")
        if self.start_from is not None and self.kind != "compress":
            raise ConfigError("'start_from' applies to compress experiments only")
        if self.recipe_overrides and self.recipe is None:
            raise ConfigError("'recipe_overrides' needs a 'recipe'")

    def load_recipe(self):
        """The recipe with ``recipe_overrides`` applied."""
        from slimbert.recipe import Recipe

        recipe = Recipe.from_file(self.recipe)
        return recipe.with_overrides(self.recipe_overrides) if self.recipe_overrides else recipe

    @property
    def output_dir(self) -> Path:
        return Path(self.output or f"runs/bench/{self.name}")


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a valid UTF-8 YAML experiment ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment must be a mapping")
    data.setdefault("name", path.stem)
    return build_dataclass(Experiment, data, str(path))
