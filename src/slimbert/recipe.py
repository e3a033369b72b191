"""Recipes: an ordered list of compression steps, loaded from YAML and validated before any work runs.

A recipe file looks like::

    name: dynamic-int8
    description: Post-training dynamic int8 quantization.
    steps:
      - method: dynamic-int8
        quantize_embeddings: false

Each step names a registered method; its other keys are that method's config fields. Methods only
compose here, by order: no method reads another method's flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.registry import get_method

_TOP_LEVEL_KEYS = ("name", "description", "steps")


@dataclass(frozen=True)
class RecipeStep:
    """One step: the registered method's name and its validated config."""

    method: str
    config: MethodConfig

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.config.to_dict()}


@dataclass(frozen=True)
class Recipe:
    """An ordered, validated list of steps."""

    steps: tuple[RecipeStep, ...]
    name: str = "recipe"
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> "Recipe":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a recipe must be a mapping with a 'steps' list, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_TOP_LEVEL_KEYS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(_TOP_LEVEL_KEYS)}"
            )
        raw_steps = data.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise ConfigError(f"{source}: 'steps' must be a non-empty list of {{method: ..., <fields>}} mappings")
        steps = []
        for i, raw in enumerate(raw_steps):
            where = f"{source}: steps[{i}]"
            if not isinstance(raw, dict) or "method" not in raw:
                raise ConfigError(f"{where}: each step must be a mapping with a 'method' key, got {raw!r}")
            fields = dict(raw)
            name = fields.pop("method")
            if not isinstance(name, str):
                raise ConfigError(f"{where}: 'method' must be a string, got {name!r}")
            try:
                method = get_method(name)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            steps.append(RecipeStep(name, method.config_cls.from_dict(fields, where=f"{where} ({name})")))
        name = data.get("name", "recipe")
        description = data.get("description", "")
        if not isinstance(name, str) or not isinstance(description, str):
            raise ConfigError(f"{source}: 'name' and 'description' must be strings")
        return cls(steps=tuple(steps), name=name, description=description)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path} (pass a YAML file; shipped recipes live in recipes/)")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def of(cls, *configs: MethodConfig, name: str = "recipe") -> "Recipe":
        """Build a recipe in Python from config objects, in order."""
        from slimbert.registry import method_for_config

        return cls(steps=tuple(RecipeStep(method_for_config(c).name, c) for c in configs), name=name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "steps": [s.to_dict() for s in self.steps]}

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> "Recipe":
        """A copy with ``{method: {field: value}}`` merged into every step of that method (nested
        mappings merge field by field), validated like a recipe file. Benchmarks use it to sweep one
        recipe over e.g. sparsities without a recipe file per point."""
        methods = {s.method for s in self.steps}
        unknown = sorted(set(overrides) - methods)
        if unknown:
            raise ConfigError(f"overrides for {', '.join(map(repr, unknown))}: the recipe has no such step "
                              f"(its methods: {', '.join(sorted(methods))})")
        data = self.to_dict()
        data["steps"] = [_merged(step, overrides.get(step["method"], {})) for step in data["steps"]]
        return Recipe.from_dict(data, source=f"{self.name} (with overrides)")


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_recipe(recipe: "str | Path | Recipe") -> Recipe:
    """A :class:`Recipe` from a path, or the recipe itself."""
    return recipe if isinstance(recipe, Recipe) else Recipe.from_file(recipe)
