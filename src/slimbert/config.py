"""Typed, validated configuration dataclasses.

Every method has one frozen dataclass config deriving from :class:`MethodConfig` (the pattern of
torchao's ``AOBaseConfig``). Configs are built from plain dicts (a recipe step) by
:meth:`MethodConfig.from_dict`, which rejects unknown fields with the list of valid ones and checks
each value against the field's type annotation, so a typo in a recipe fails before any work runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from slimbert.errors import ConfigError
from slimbert.model_shape import ModelShape

T = TypeVar("T", bound="MethodConfig")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        k, v = get_args(tp)
        return f"mapping of {_type_name(k)} to {_type_name(v)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form.

    Lists become tuples (configs are frozen); dicts for dataclass-typed fields become that
    dataclass; ints are accepted where floats are expected. Raises :class:`ConfigError` naming
    ``where`` (e.g. ``steps[2].sparsity``) on a mismatch.
    """
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item_tp = args[0] if args else Any
        return tuple(coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        k_tp, v_tp = get_args(tp)
        return {coerce(k, k_tp, where): coerce(v, v_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build_dataclass(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .inf / .nan: no setting means infinity or "not a number"
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def build_dataclass(cls: type, data: dict, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and mistyped values."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(repr(u) for u in unknown)} for {cls.__name__}; valid fields: {valid}"
        )
    kwargs = {name: coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {', '.join(missing)} for {cls.__name__}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def to_plain(value: Any) -> Any:
    """Turn configs (and nested dataclasses/tuples) into JSON/YAML-friendly plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method's config. Subclasses are frozen dataclasses with typed fields.

    Override :meth:`validate` to check value ranges; raise :class:`ConfigError` with a message
    that says which value is wrong and what is allowed.
    """

    method_name: ClassVar[str] = ""

    def validate(self) -> None:
        """Check value ranges; subclasses override."""

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        """Check this step against the shape of the model it will receive (``teacher``: the recipe's input
        model) before any work runs, and return the shape it hands on; raise :class:`ConfigError` when it
        cannot apply. Subclasses whose fields depend on the model (layer indices, head counts, block sizes)
        override it; the default changes nothing."""
        return model

    @classmethod
    def from_dict(cls: type[T], data: dict, where: str | None = None) -> T:
        return build_dataclass(cls, dict(data), where or cls.__name__)

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                *, low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high`` (bounds optional/exclusive)."""
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = ("[" if low_inclusive else "(") + f"{lo}, {hi}" + ("]" if high_inclusive else ")")
        raise ConfigError(f"{name} must be in {interval}, got {value}")


__all__ = ["MethodConfig", "build_dataclass", "coerce", "to_plain", "check_range"]
