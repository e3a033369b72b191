"""The method registry: ``@register_method`` binds a recipe name to a config class and a transform.

Adding a compression method means adding a file (or folder) under ``slimbert/methods/<family>/``
named after the method, whose ``apply`` function is decorated here (torchao's "config + registered
handler" pattern); nothing else in the code base dispatches on method names. Importing
:mod:`slimbert.methods` (which ``import slimbert`` does) registers every built-in method.

Besides its config class, a method declares what the step machinery needs to know about it:

* ``accepts_distill``: it trains through the step's loss (``ctx.train`` without its own loss
  terms), so a recipe step may carry a ``distill:`` block (:mod:`slimbert.steps.teacher`);
* ``default_distill``: the block it uses when the step has none (TernaryBERT is distillation-trained);
* ``quantizes``: its result is no longer a plain float model, so only steps that say they can
  follow quantization (``after_quantization``) may come after it;
* ``after_factorization``: it works on a model whose encoder linears are low-rank factor pairs (it trains
  them, or quantizes the factors); other steps need plain linears and cannot follow a factorization;
* ``after_sharing``: it keeps modules shared between layers shared (it trains them, or quantizes each shared
  module once); steps that cut or rewrite layers one by one cannot follow cross-layer sharing;
* ``after_exit_heads``: it keeps a model's early-exit heads valid (it does not change the layers they read);
  steps that cut, add or rewrite layers cannot follow ``early-exit``;
* ``fallback``: what ``on_exceed: fallback`` does when the step's accuracy gate fails: a function
  returning a milder config (the step is run again from its input model), ``"layers"`` (the method
  restores layers to higher precision itself), or None (no fallback: the gate can only fail the step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

from slimbert.config import MethodConfig
from slimbert.errors import ConfigError
from slimbert.steps.teacher import StepDistillation

if TYPE_CHECKING:
    from slimbert.models.bundle import ModelBundle
    from slimbert.steps.context import StepContext

ApplyFn = Callable[["ModelBundle", MethodConfig, "StepContext"], "ModelBundle"]
# A milder config to retry with when the accuracy gate fails (None: no milder one left), or "layers".
Fallback = Callable[[MethodConfig], "MethodConfig | None"] | Literal["layers"] | None

FAMILIES = (
    "quantization",
    "pruning",
    "distillation",
    "factorization",
    "dynamic-inference",
    "parameter-sharing",
    "embedding-compression",
)


@dataclass(frozen=True)
class RegisteredMethod:
    """One compression method: its recipe ``name``, survey ``family``, config class and transform."""

    name: str
    family: str
    config_cls: type[MethodConfig]
    apply: ApplyFn
    accepts_distill: bool = False
    default_distill: StepDistillation | None = None
    quantizes: bool = False
    after_quantization: bool = False
    after_factorization: bool = False
    after_sharing: bool = False
    after_exit_heads: bool = False
    fallback: "Fallback" = None

    @property
    def summary(self) -> str:
        doc = (self.apply.__doc__ or self.config_cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_METHODS: dict[str, RegisteredMethod] = {}


def register_method(name: str, config_cls: type[MethodConfig], *, family: str, accepts_distill: bool = False,
                    default_distill: StepDistillation | None = None, quantizes: bool = False,
                    after_quantization: bool = False, after_factorization: bool = False,
                    after_sharing: bool = False, after_exit_heads: bool = False,
                    fallback: Fallback = None) -> Callable[[ApplyFn], ApplyFn]:
    """Register ``apply(bundle, cfg, ctx) -> bundle`` as the transform for recipe steps ``method: name``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}; expected one of {FAMILIES}")
    if default_distill is not None and not accepts_distill:
        raise ValueError(f"method {name!r}: a default distill block needs accepts_distill=True")

    def decorator(fn: ApplyFn) -> ApplyFn:
        if name in _METHODS and _METHODS[name].apply is not fn:
            raise ValueError(f"method {name!r} is already registered")
        config_cls.method_name = name
        _METHODS[name] = RegisteredMethod(name=name, family=family, config_cls=config_cls, apply=fn,
                                          accepts_distill=accepts_distill, default_distill=default_distill,
                                          quantizes=quantizes, after_quantization=after_quantization,
                                          after_factorization=after_factorization, after_sharing=after_sharing,
                                          after_exit_heads=after_exit_heads, fallback=fallback)
        return fn

    return decorator


def available_methods() -> dict[str, RegisteredMethod]:
    """All registered methods, by recipe name."""
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
