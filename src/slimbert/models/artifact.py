"""Save and load compressed models.

A saved artifact is a directory::

    config.json            the Hugging Face config (new layer count, labels, ...)
    model.safetensors      every tensor of the compressed model (int8 stays int8, packed stays packed)
    tokenizer files
    slimbert.json          the manifest: module kinds/shapes, applied steps, ONNX transforms
    model.onnx             (optional) the fast-runtime export

:func:`load_compressed` rebuilds the model from config, swaps in modules of the recorded kinds and
shapes (see :mod:`slimbert.models.module_kinds`), then loads the weights strictly: a mismatch is an
error, never a silently half-loaded model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slimbert.errors import ModelLoadError
from slimbert.models.bundle import ModelBundle
from slimbert.models.hf_logging import quiet_transformers
from slimbert.models.module_kinds import build_module, module_manifest, shared_module_aliases
from slimbert.models.structure import get_module, set_module
from slimbert.models.surgery import sync_layer_attributes
from slimbert.version import __version__

MANIFEST_NAME = "slimbert.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"
FORMAT = "slimbert/1"


def save_compressed(bundle: ModelBundle, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``bundle`` to ``directory`` (created if needed) as a reloadable artifact."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = bundle.model
    model.config.save_pretrained(directory)
    save_model(model, str(directory / WEIGHTS_NAME))
    bundle.tokenizer.save_pretrained(directory)
    manifest = {
        "format": FORMAT,
        "slimbert_version": __version__,
        "model_class": type(model).__name__,
        "source": bundle.source,
        "modules": module_manifest(model),
        # Modules reachable under several paths (cross-layer sharing): tied again on load, stored once.
        "shared_modules": shared_module_aliases(model),
        "onnx_transforms": bundle.onnx_transforms,
        "history": bundle.history,
        # Early exit / token dropping settings: the runner (slimbert.models.adaptive) applies them at inference.
        "adaptive_inference": bundle.adaptive,
        **(extra or {}),
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return directory


def write_manifest_fields(directory: str | os.PathLike, fields: dict[str, Any]) -> None:
    """Add or replace top-level fields of an artifact's manifest (e.g. its serving runtime, known once measured)."""
    path = Path(directory) / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


def is_slimbert_artifact(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The artifact's manifest, checked: a damaged or foreign file is a :class:`ModelLoadError` naming it."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ModelLoadError(f"{directory} is not a slimbert artifact (no {MANIFEST_NAME}); "
                             "use slimbert.load_model for plain Hugging Face directories")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable slimbert manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path}: a slimbert manifest is a JSON object, found {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: unsupported artifact format {manifest.get('format')!r} (expected {FORMAT})")
    modules = manifest.get("modules")
    if not isinstance(modules, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("kind"), str) and isinstance(e.get("spec"), dict)
            for e in modules.values()):
        raise ModelLoadError(f"{path}: 'modules' must map module paths to {{\"kind\", \"spec\"}} entries; the file is "
                             "damaged or was not written by slimbert")
    for key in ("onnx_transforms", "history"):
        if not isinstance(manifest.get(key, []), list):
            raise ModelLoadError(f"{path}: {key!r} must be a list")
    if not isinstance(manifest.get("adaptive_inference") or {}, dict):
        raise ModelLoadError(f"{path}: 'adaptive_inference' must be an object of early-exit / token-dropping settings")
    shared = manifest.get("shared_modules") or {}
    if not isinstance(shared, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in shared.items()):
        raise ModelLoadError(f"{path}: 'shared_modules' must map module paths to the paths they share")
    return manifest


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes recorded in a safetensors file's header (nothing is loaded)."""
    from safetensors import safe_open

    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: the artifact has no weights")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated, empty or foreign files
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc}); it may be truncated or empty") from None


def _build(config, manifest: dict[str, Any], directory: Path, attn_implementation: str, device: str):
    from transformers import AutoModelForSequenceClassification

    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
        for path, entry in manifest["modules"].items():
            try:
                set_module(model, path, build_module(entry["kind"], entry["spec"]))
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise ModelLoadError(f"{directory / MANIFEST_NAME}: cannot rebuild module {path!r} "
                                     f"({type(exc).__name__}: {exc})") from None
        for alias, source in (manifest.get("shared_modules") or {}).items():
            try:
                set_module(model, alias, get_module(model, source))
            except (AttributeError, IndexError, ValueError, TypeError) as exc:
                raise ModelLoadError(f"{directory / MANIFEST_NAME}: cannot share module {source!r} as {alias!r} "
                                     f"({type(exc).__name__}: {exc})") from None
    return model


def check_declared_shapes(model, shapes: dict[str, tuple[int, ...]], directory: Path) -> None:
    """Every tensor the manifest and config declare (built on the meta device) must be in the weights file with
    the same shape, before anything is allocated: a damaged manifest cannot make the loader allocate 160 GB."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)  # tied tensors are stored once
    declared = model.state_dict(keep_vars=True)
    problems = []
    for names in groups.values():
        stored = [n for n in names if n in shapes]
        if not stored:
            problems.append(f"{names[0]}: declared {tuple(declared[names[0]].shape)}, missing from {WEIGHTS_NAME}")
            continue
        want = tuple(declared[stored[0]].shape)
        if want != shapes[stored[0]]:
            problems.append(f"{stored[0]}: {MANIFEST_NAME}/config.json declare {want}, {WEIGHTS_NAME} holds "
                            f"{shapes[stored[0]]}")
    if problems:
        raise ModelLoadError(f"{directory}: the recorded model structure does not match the weights: "
                             + "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))


def load_compressed(directory: str | os.PathLike, attn_implementation: str = "sdpa") -> ModelBundle:
    """Load an artifact written by :func:`save_compressed` (e.g. by ``slimbert compress``).

    The manifest and config are checked against the weights file's header on the meta device first, so a
    damaged artifact fails with a :class:`ModelLoadError` naming the file before any memory is allocated.
    """
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoTokenizer

    directory = Path(directory)
    manifest = read_manifest(directory)
    shapes = weight_shapes(directory / WEIGHTS_NAME)
    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(directory)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory / 'config.json'}: not a readable model config ({exc})") from None
    check_declared_shapes(_build(config, manifest, directory, attn_implementation, "meta"), shapes, directory)
    model = _build(config, manifest, directory, attn_implementation, "cpu")
    sync_layer_attributes(model)  # pruned heads: attention modules' head counts follow the new shapes
    try:
        load_model(model, str(directory / WEIGHTS_NAME), strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{directory}: the weights do not match the recorded model structure: {exc}") from None
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: could not load the tokenizer ({exc})") from None
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        source=manifest.get("source", str(directory)),
        onnx_transforms=manifest.get("onnx_transforms", []),
        history=manifest.get("history", []),
        adaptive=manifest.get("adaptive_inference") or {},
    )
