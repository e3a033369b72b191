"""Configs and recipes: typed fields, helpful errors, every shipped recipe valid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from slimbert.config import MethodConfig, check_range
from slimbert.errors import ConfigError
from slimbert.recipe import Recipe
from slimbert.steps.registry import available_methods, get_method

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@dataclass(frozen=True)
class Inner:
    a: int = 1


@dataclass(frozen=True)
class DemoConfig(MethodConfig):
    sparsity: float = 0.5
    bits: int = 8
    name: str = "x"
    layers: tuple[int, ...] = ()
    mode: str | None = None
    inner: Inner = Inner()

    def validate(self):
        check_range("sparsity", self.sparsity, 0, 1, high_inclusive=False)


def test_from_dict_coerces_types():
    cfg = DemoConfig.from_dict({"sparsity": 0, "layers": [1, 2], "inner": {"a": 3}})
    assert cfg.sparsity == 0.0 and isinstance(cfg.sparsity, float)
    assert cfg.layers == (1, 2)
    assert cfg.inner == Inner(3)
    assert DemoConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_field_lists_valid_fields():
    with pytest.raises(ConfigError) as exc:
        DemoConfig.from_dict({"sparsty": 0.5})
    msg = str(exc.value)
    assert "'sparsty'" in msg and "sparsity" in msg and "bits" in msg


@pytest.mark.parametrize("data, fragment", [
    ({"bits": "8"}, "expected an integer"),
    ({"bits": True}, "expected an integer"),
    ({"sparsity": "high"}, "expected a number"),
    ({"layers": 3}, "expected list of int"),
    ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
    ({"inner": {"b": 1}}, "unknown field(s) 'b'"),
])
def test_bad_values_are_explained(data, fragment):
    with pytest.raises(ConfigError, match=None) as exc:
        DemoConfig.from_dict(data)
    assert fragment in str(exc.value)


def test_unknown_method_lists_registered_ones():
    with pytest.raises(ConfigError) as exc:
        Recipe.from_dict({"steps": [{"method": "dynamic-int9"}]})
    assert "dynamic-int9" in str(exc.value) and "dynamic-int8" in str(exc.value)
    assert "steps[0]" in str(exc.value)


@pytest.mark.parametrize("data, fragment", [
    ([], "must be a mapping"),
    ({}, "'steps' must be a non-empty list"),
    ({"steps": []}, "'steps' must be a non-empty list"),
    ({"steps": ["dynamic-int8"]}, "each step must be a mapping with a 'method' key"),
    ({"steps": [{"method": "dynamic-int8", "bits": 4}]}, "unknown field(s) 'bits'"),
    ({"steps": [{"method": "dynamic-int8"}], "stepz": 1}, "unknown top-level key(s) 'stepz'"),
])
def test_malformed_recipes(data, fragment):
    with pytest.raises(ConfigError) as exc:
        Recipe.from_dict(data, source="r.yaml")
    assert fragment in str(exc.value)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        Recipe.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [method: dynamic-int8\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Recipe.from_file(bad)


def test_recipe_round_trip():
    r = Recipe.from_dict({"name": "n", "steps": [{"method": "dynamic-int8", "quantize_embeddings": True}]})
    again = Recipe.from_dict(r.to_dict())
    assert again == r
    assert r.steps[0].config.quantize_embeddings is True


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_is_valid(path):
    recipe = Recipe.from_file(path)
    assert recipe.steps and recipe.description


def test_registry():
    methods = available_methods()
    assert "dynamic-int8" in methods
    m = get_method("dynamic-int8")
    assert m.family == "quantization" and m.summary
