"""ModelBundle: a task model, its tokenizer, and what has been done to it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from slimbert.models.structure import ArchSpec, arch_of


@dataclass
class ModelBundle:
    """A sequence-classification model travelling through a recipe.

    ``onnx_transforms`` are registered ONNX graph transforms (see :mod:`slimbert.export.onnx`)
    that turn the exported float graph into the fast-runtime artifact, e.g. ORT dynamic int8
    quantization; a method that changes how the model should run on ONNX Runtime appends one.
    ``history`` records every applied step (method name + config) and ends up in the manifest.
    ``adaptive`` holds the input-adaptive inference settings (early exit, token dropping; see
    :class:`~slimbert.models.adaptive.runner.AdaptiveSettings`) as a dict, empty for a static model.
    """

    model: nn.Module
    tokenizer: Any
    source: str
    onnx_transforms: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    adaptive: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> ArchSpec:
        return arch_of(self.model)

    @property
    def config(self):
        return self.model.config

    def clone(self) -> "ModelBundle":
        """A deep copy of the model (the tokenizer is shared: it is never modified)."""
        return ModelBundle(
            model=copy.deepcopy(self.model),
            tokenizer=self.tokenizer,
            source=self.source,
            onnx_transforms=copy.deepcopy(self.onnx_transforms),
            history=copy.deepcopy(self.history),
            adaptive=copy.deepcopy(self.adaptive),
        )
