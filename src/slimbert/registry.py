"""The method registry: ``@register_method`` binds a recipe name to a config class and a transform.

Adding a compression method means adding a folder under ``slimbert/methods`` whose ``apply``
function is decorated here (torchao's "config + registered handler" pattern); nothing else in the
code base dispatches on method names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError

if TYPE_CHECKING:
    from slimbert.context import StepContext
    from slimbert.models.bundle import ModelBundle

ApplyFn = Callable[["ModelBundle", MethodConfig, "StepContext"], "ModelBundle"]

FAMILIES = (
    "quantization",
    "pruning",
    "distillation",
    "factorization",
    "dynamic-inference",
    "parameter-sharing",
)


@dataclass(frozen=True)
class RegisteredMethod:
    """One compression method: its recipe ``name``, survey ``family``, config class and transform."""

    name: str
    family: str
    config_cls: type[MethodConfig]
    apply: ApplyFn

    @property
    def summary(self) -> str:
        doc = (self.apply.__doc__ or self.config_cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_METHODS: dict[str, RegisteredMethod] = {}


def register_method(name: str, config_cls: type[MethodConfig], *, family: str) -> Callable[[ApplyFn], ApplyFn]:
    """Register ``apply(bundle, cfg, ctx) -> bundle`` as the transform for recipe steps ``method: name``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}; expected one of {FAMILIES}")

    def decorator(fn: ApplyFn) -> ApplyFn:
        if name in _METHODS and _METHODS[name].apply is not fn:
            raise ValueError(f"method {name!r} is already registered")
        config_cls.method_name = name
        _METHODS[name] = RegisteredMethod(name=name, family=family, config_cls=config_cls, apply=fn)
        return fn

    return decorator


def _load_builtin_methods() -> None:
    # Importing the package runs every method's @register_method.
    importlib.import_module("slimbert.methods")


def available_methods() -> dict[str, RegisteredMethod]:
    """All registered methods, by recipe name."""
    _load_builtin_methods()
    return dict(sorted(_METHODS.items()))


def get_method(name: str) -> RegisteredMethod:
    """Look up a method by recipe name; an unknown name lists the valid ones."""
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; registered methods: {', '.join(methods)}")
    return methods[name]


def method_for_config(cfg: MethodConfig) -> RegisteredMethod:
    """The registered method whose config class is ``type(cfg)``."""
    for method in available_methods().values():
        if type(cfg) is method.config_cls:
            return method
    raise ConfigError(f"{type(cfg).__name__} is not the config of any registered method")
