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

from slimbert.errors import ModelLoadError
from slimbert.models.bundle import ModelBundle
from slimbert.models.hf_logging import quiet_transformers
from slimbert.models.module_kinds import build_module, module_manifest
from slimbert.models.structure import set_module
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
        "onnx_transforms": bundle.onnx_transforms,
        "history": bundle.history,
        **(extra or {}),
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return directory


def is_slimbert_artifact(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ModelLoadError(f"{directory} is not a slimbert artifact (no {MANIFEST_NAME}); "
                             "use slimbert.load_model for plain Hugging Face directories")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: unsupported artifact format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def load_compressed(directory: str | os.PathLike, attn_implementation: str = "sdpa") -> ModelBundle:
    """Load an artifact written by :func:`save_compressed` (e.g. by ``slimbert compress``)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    manifest = read_manifest(directory)
    quiet_transformers()
    config = AutoConfig.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
    for path, entry in manifest["modules"].items():
        set_module(model, path, build_module(entry["kind"], entry["spec"]))
    sync_layer_attributes(model)  # pruned heads: attention modules' head counts follow the new shapes
    try:
        load_model(model, str(directory / WEIGHTS_NAME), strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{directory}: the weights do not match the recorded model structure: {exc}") from None
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        source=manifest.get("source", str(directory)),
        onnx_transforms=manifest.get("onnx_transforms", []),
        history=manifest.get("history", []),
    )
