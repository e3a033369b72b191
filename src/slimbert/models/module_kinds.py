"""Savable module kinds: how a saved artifact's modules are rebuilt before its weights load.

A compressed model contains modules a fresh ``from_config`` model does not have: smaller
``nn.Linear`` layers after head/neuron pruning, int8 linears, packed low-bit linears, low-rank
factors. The manifest of a saved artifact records, for every such module, its *kind* and
constructor *spec*; :func:`build_module` rebuilds an empty module of the right shape so that
``load_state_dict(strict=True)`` fills it.

A compressed module class registers itself with :func:`register_module_kind` and implements::

    kind: ClassVar[str]
    def spec(self) -> dict                       # JSON-able constructor arguments
    @classmethod
    def from_spec(cls, spec) -> nn.Module        # empty module of that shape
    def to_float(self) -> nn.Module              # equivalent float module (for ONNX export)

Optional: ``logical_params()`` / ``logical_nonzero()`` (weights it stands for, e.g. the unpacked
count of a packed matrix) and ``flops_per_token()``.

A kind with ``factored = True`` (low-rank factors) is a composite of plain linears: it stores nothing in a
compressed form, so later steps may quantize its factors (:func:`replace_plain_linears`), but it is no longer
one matrix that pruning could cut. Its spec records its children's kinds, so quantized factors reload.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from torch import nn

_KINDS: dict[str, type] = {}

# Plain torch modules are described by functions instead of methods.
_BUILTIN_SPEC: dict[type, tuple[str, Callable[[nn.Module], dict], Callable[[dict], nn.Module]]] = {
    nn.Linear: (
        "linear",
        lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
        lambda s: nn.Linear(s["in_features"], s["out_features"], bias=s["bias"]),
    ),
    nn.Embedding: (
        "embedding",
        lambda m: {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim, "padding_idx": m.padding_idx},
        lambda s: nn.Embedding(s["num_embeddings"], s["embedding_dim"], padding_idx=s["padding_idx"]),
    ),
}
_BUILTIN_BY_KIND = {kind: build for kind, _, build in _BUILTIN_SPEC.values()}
BUILTIN_KINDS = frozenset(_BUILTIN_BY_KIND)  # plain float modules; every other kind is a compressed one


def register_module_kind(cls: type) -> type:
    """Class decorator: make ``cls`` (with ``kind``, ``spec``, ``from_spec``, ``to_float``) savable."""
    for attr in ("kind", "spec", "from_spec", "to_float"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} must define {attr} to be a savable module kind")
    if cls.kind in _KINDS and _KINDS[cls.kind] is not cls:
        raise ValueError(f"module kind {cls.kind!r} already registered by {_KINDS[cls.kind].__name__}")
    _KINDS[cls.kind] = cls
    return cls


def describe_module(module: nn.Module) -> dict[str, Any] | None:
    """``{"kind", "spec"}`` for a savable module, None for anything else."""
    if type(module) in _BUILTIN_SPEC:
        kind, spec, _ = _BUILTIN_SPEC[type(module)]
        return {"kind": kind, "spec": spec(module)}
    if getattr(type(module), "kind", None) in _KINDS and _KINDS[type(module).kind] is type(module):
        return {"kind": module.kind, "spec": module.spec()}
    return None


def is_compressed_module(module: nn.Module) -> bool:
    """True for registered (non-builtin) compressed module kinds."""
    return getattr(type(module), "kind", None) in _KINDS


class FactoredComposite(nn.Module):
    """Base of factored kinds: named float ``parts`` (plain modules that later steps may quantize).

    ``factor_specs()`` records each part's kind and spec, ``restore_parts(spec)`` rebuilds them on load
    (so a quantized part reloads quantized), and ``to_float()`` dequantizes the parts in place.
    """

    factored: ClassVar[bool] = True
    parts: ClassVar[tuple[str, ...]] = ()

    def factor_specs(self) -> dict[str, Any]:
        return {name: describe_module(getattr(self, name)) for name in self.parts}

    def restore_parts(self, spec: dict[str, Any]) -> "FactoredComposite":
        for name, entry in (spec.get("factors") or {}).items():
            if name not in self.parts or not isinstance(entry, dict):
                raise ValueError(f"{self.kind} part {name!r}: expected one of {', '.join(self.parts)} with a kind "
                                 "and spec")
            setattr(self, name, build_module(entry["kind"], entry["spec"]))
        return self

    def to_float(self) -> "FactoredComposite":
        for name in self.parts:
            part = getattr(self, name)
            if is_compressed_module(part):
                setattr(self, name, part.to_float())
        return self


def is_factored_module(module: nn.Module) -> bool:
    """True for composite kinds made of plain linears (``factored = True``: low-rank factors)."""
    return is_compressed_module(module) and getattr(type(module), "factored", False)


def stores_compressed_weights(module: nn.Module) -> bool:
    """True for kinds whose weights are stored quantized, packed or sparse (not factored float linears)."""
    return is_compressed_module(module) and not getattr(type(module), "factored", False)


def manifest_flags(modules: dict[str, Any]) -> tuple[bool, bool]:
    """``(compressed, factored)`` of an artifact's manifest modules: whether any holds compressed weights, and
    whether any is a factored composite (whose recorded factors may themselves be compressed)."""
    compressed = factored = False
    for entry in modules.values():
        if not isinstance(entry, dict) or entry.get("kind") in BUILTIN_KINDS:
            continue
        cls = _KINDS.get(entry.get("kind"))
        if cls is not None and getattr(cls, "factored", False):
            factored = True
            factors = (entry.get("spec") or {}).get("factors") or {}
            sub_compressed, _ = manifest_flags(factors)
            compressed = compressed or sub_compressed
        else:
            compressed = True
    return compressed, factored


def replace_plain_linears(module: nn.Module, transform: Callable[[nn.Module], nn.Module],
                          plain: type[nn.Module] = nn.Linear) -> nn.Module:
    """``transform(module)`` for a plain ``plain`` module (a linear, by default); for a factored composite, its
    children of that type replaced in place by ``transform(child)`` (the composite is returned). Anything else
    is a TypeError."""
    if type(module) is plain:
        return transform(module)
    if is_factored_module(module):
        for name, child in list(module.named_children()):
            if type(child) is plain:
                setattr(module, name, transform(child))
        return module
    raise TypeError(f"{type(module).__name__} is neither a plain {plain.__name__} nor a factored composite of them")


def shared_module_aliases(model: nn.Module) -> dict[str, str]:
    """``{alias path: first path}`` for every module reachable under more than one path (cross-layer sharing)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if not name:
            continue
        if id(module) in first and not any(name.startswith(a + ".") for a in aliases):
            aliases[name] = first[id(module)]
        first.setdefault(id(module), name)
    return aliases


def build_module(kind: str, spec: dict[str, Any]) -> nn.Module:
    if kind in _BUILTIN_BY_KIND:
        return _BUILTIN_BY_KIND[kind](spec)
    if kind not in _KINDS:
        # Method modules register their kinds when imported (``import slimbert`` imports them all).
        raise KeyError(f"unknown module kind {kind!r}; known: {sorted(_KINDS) + sorted(_BUILTIN_BY_KIND)} (an "
                       "artifact of a newer slimbert, or of a method whose module was not imported)")
    return _KINDS[kind].from_spec(spec)


def module_manifest(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Kind + spec of every savable module of ``model`` (not descending into compressed modules)."""
    manifest: dict[str, dict[str, Any]] = {}
    skip_prefixes: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(p) for p in skip_prefixes):
            continue
        described = describe_module(module)
        if described is not None:
            manifest[name] = described
            if is_compressed_module(module):
                skip_prefixes.append(name + ".")
    return manifest


def float_equivalent(model: nn.Module) -> nn.Module:
    """Replace every compressed module of ``model`` (in place) by its float equivalent."""
    from slimbert.models.structure import set_module

    replaced: list[str] = []
    for name, module in list(model.named_modules()):
        if name and is_compressed_module(module) and not any(name.startswith(p) for p in replaced):
            set_module(model, name, module.to_float())
            replaced.append(name + ".")
    return model


def computes_in_int8(model: nn.Module) -> bool:
    """Whether any module of ``model`` runs its products on int8 kernels (a kind with ``computes_int8 = True``)."""
    return any(getattr(type(m), "computes_int8", False) for m in model.modules())
