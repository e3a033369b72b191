"""Recipes: an ordered list of compression steps, loaded from YAML and validated before any work runs.

A recipe file looks like::

    name: dynamic-int8
    description: Post-training dynamic int8 quantization.
    steps:
      - method: dynamic-int8
        quantize_embeddings: false

Each step names a registered method; its other keys are that method's config fields, except the
options every step may carry, which belong to the step machinery, not to the method:

* ``distill:`` distil this step's training from the recipe's teacher (:mod:`slimbert.steps.teacher`);
* ``max_metric_drop``, ``on_exceed``, ``gate_against``: the step's accuracy gate (:mod:`slimbert.steps.gate`).

A recipe may name the ``runtime`` its artifact will be served on (``pytorch``, ``onnxruntime`` or
``openvino``): accuracy gates check that runtime, and the report serves from it; without one, gates
check ONNX Runtime and the artifact is served on the fastest runtime measured.

Methods only compose here, by order: no method reads another method's flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from slimbert.config import MethodConfig, build_dataclass, to_plain
from slimbert.errors import ConfigError
from slimbert.export.runtimes import RUNTIMES
from slimbert.methods import RegisteredMethod, get_method, method_for_config
from slimbert.model_shape import ModelShape
from slimbert.steps.gate import GATE_KEYS, StepGate
from slimbert.steps.teacher import StepDistillation

_TOP_LEVEL_KEYS = ("name", "description", "runtime", "steps")
DISTILL_KEY = "distill"


@dataclass(frozen=True)
class RecipeStep:
    """One step: the registered method's name, its validated config, and the step's options."""

    method: str
    config: MethodConfig
    distill: StepDistillation | None = None
    gate: StepGate | None = None

    def fields(self) -> dict[str, Any]:
        """The step's keys as a recipe spells them, without ``method``: config fields and step options."""
        return {k: v for k, v in self.to_dict().items() if k != "method"}

    def to_dict(self) -> dict[str, Any]:
        out = {"method": self.method, **self.config.to_dict()}
        if self.distill is not None or get_method(self.method).default_distill is not None:
            out[DISTILL_KEY] = to_plain(self.distill)  # null too, when it switches a default block off
        if self.gate is not None:
            out.update(to_plain(self.gate))
        return out


def step_gate(method: RegisteredMethod, fields: dict[str, Any], where: str) -> StepGate | None:
    """Pop the step's accuracy-gate keys from ``fields``; ``on_exceed: fallback`` needs a method that has one."""
    raw = {k: fields.pop(k) for k in GATE_KEYS if k in fields}
    if not raw:
        return None
    if "max_metric_drop" not in raw:
        raise ConfigError(f"{where}: {', '.join(sorted(raw))} configure an accuracy gate, which needs max_metric_drop "
                          "(points of the task's main metric the step may lose)")
    gate = build_dataclass(StepGate, raw, where)
    if gate.on_exceed == "fallback" and method.fallback is None:
        raise ConfigError(f"{where}: method {method.name!r} has no fallback for its accuracy gate; use on_exceed: "
                          "error (the default), or a method with one (pruning, static/QAT/low-bit quantization)")
    return gate


def step_distillation(method: RegisteredMethod, fields: dict[str, Any], where: str) -> StepDistillation | None:
    """Pop the step's ``distill:`` block from ``fields``: merged onto the method's default block, if any;
    ``distill: null`` turns distillation off; refused for methods that do not train through the step's loss."""
    if DISTILL_KEY not in fields:
        return method.default_distill
    raw = fields.pop(DISTILL_KEY)
    if raw is None:
        return None
    if not method.accepts_distill:
        why = ("it configures its own distillation losses (logits_loss, matches, ...)" if method.name == "distill"
               else "it does not train")
        raise ConfigError(f"{where}: method {method.name!r} takes no distill: block ({why})")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.distill: expected a mapping of {', '.join(StepDistillation.__dataclass_fields__)}, "
                          f"got {raw!r}")
    base = to_plain(method.default_distill) if method.default_distill is not None else {}
    return build_dataclass(StepDistillation, {**base, **raw}, f"{where}.distill")


@dataclass(frozen=True)
class Recipe:
    """An ordered, validated list of steps."""

    steps: tuple[RecipeStep, ...]
    name: str = "recipe"
    description: str = ""
    runtime: str | None = None  # the runtime the artifact is served on (None: the fastest measured)

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe", default_name: str = "recipe") -> "Recipe":
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
            distill = step_distillation(method, fields, f"{where} ({name})")
            gate = step_gate(method, fields, f"{where} ({name})")
            config = method.config_cls.from_dict(fields, where=f"{where} ({name})")
            if distill is not None and getattr(config, "train", True) is None:
                raise ConfigError(f"{where} ({name}): a distill: block needs training, but train is null")
            steps.append(RecipeStep(name, config, distill, gate))
        name = data.get("name", default_name)
        description = data.get("description", "")
        if not isinstance(name, str) or not isinstance(description, str):
            raise ConfigError(f"{source}: 'name' and 'description' must be strings")
        runtime = data.get("runtime")
        if runtime is not None and runtime not in RUNTIMES:
            raise ConfigError(f"{source}: runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
        return cls(steps=tuple(steps), name=name, description=description, runtime=runtime)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path} (pass a YAML file; shipped recipes live in recipes/)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the recipe as UTF-8") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path), default_name=path.stem)

    @classmethod
    def of(cls, *configs: MethodConfig, name: str = "recipe") -> "Recipe":
        """Build a recipe in Python from config objects, in order (each step with its method's default
        distill block, if any)."""
        steps = []
        for c in configs:
            method = method_for_config(c)
            steps.append(RecipeStep(method.name, c, method.default_distill))
        return cls(steps=tuple(steps), name=name)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "description": self.description, "steps": [s.to_dict() for s in self.steps]}
        if self.runtime is not None:
            out["runtime"] = self.runtime
        return out

    def check(self, model: ModelShape, teacher: ModelShape | None = None) -> ModelShape:
        """Walk the steps over the model's shape before any work runs; return the final shape.

        Checks the step order (no step that needs plain float linears after one that quantized or
        sparse-stored them), each step's ``distill:`` block against the shapes it pairs, and each
        method's :meth:`~slimbert.config.MethodConfig.plan` (layer counts, head counts, block sizes).
        ``teacher`` is the recipe's input model (default: ``model``).
        """
        teacher = teacher or model
        shape = model
        for i, step in enumerate(self.steps):
            where = f"{self.name}: steps[{i}] ({step.method})"
            method = get_method(step.method)
            if shape.compressed_linears and not method.after_quantization:
                raise ConfigError(
                    f"{where}: the model's encoder linears are already quantized or stored sparse "
                    f"(an earlier step, or the input artifact), and {step.method} needs plain float linears; "
                    "put pruning, distillation and other training steps before quantization steps")
            if shape.factored_linears and not method.after_factorization:
                raise ConfigError(
                    f"{where}: the model's encoder linears are already low-rank factor pairs (an earlier step, or "
                    f"the input artifact), and {step.method} needs plain linears; put it before the factorization "
                    "step (distill and dynamic-int8 may follow one)")
            if shape.shared_layers and not method.after_sharing:
                raise ConfigError(
                    f"{where}: the model's encoder layers already share modules (an earlier share-layers step, or the "
                    f"input artifact), and {step.method} changes layers one by one; put it before share-layers "
                    "(distill and dynamic-int8 may follow one)")
            if shape.exit_heads and not method.after_exit_heads:
                raise ConfigError(
                    f"{where}: the model has early-exit heads (an earlier early-exit step, or the input artifact), "
                    f"which read every layer, and {step.method} may change the layers; put it before early-exit "
                    "(dynamic-int8 and token-dropping may follow one)")
            try:
                if step.distill is not None:
                    step.distill.check_shapes(shape, teacher)
                shape = step.config.plan(shape, teacher)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if method.quantizes:
                shape = replace(shape, compressed_linears=True)
        return shape

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
