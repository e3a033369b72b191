"""Serving a compressed model: texts in, labels and scores out, on any runtime the artifact has.

    clf = slimbert.pipeline("runs/fast-cpu")                # the artifact's serving runtime
    clf(["a gripping, funny film", "dull and too long"])   # [{"label": "1", "score": 0.98}, ...]
    clf([("A man plays.", "Someone plays.")])              # sentence pairs

``runtime`` picks PyTorch, ONNX Runtime or OpenVINO; by default the runtime the artifact records as its
serving runtime (the fastest measured by ``compress``), else the first fast runtime it has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from slimbert.data.encoding import encode
from slimbert.data.loaders import Example
from slimbert.errors import SlimbertError
from slimbert.export.runtimes import RUNTIMES, Session, available_runtimes, open_session
from slimbert.models.artifact import is_slimbert_artifact, read_manifest
from slimbert.models.bundle import ModelBundle
from slimbert.models.loading import load_model, resolve_model_source
from slimbert.models.shape import shape_of
from slimbert.training.settings import RunSettings

Text = str | tuple[str, str]


@dataclass
class Prediction:
    label: str | None  # the class name (None for regression)
    score: float  # the class probability, or the regression output

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score}


class Pipeline:
    """A loaded model and a runtime session: call it with texts (or text pairs)."""

    def __init__(self, bundle: ModelBundle, session: Session, max_seq_len: int):
        self.bundle, self.session, self.max_seq_len = bundle, session, max_seq_len
        config = bundle.model.config
        self.regression = config.problem_type == "regression" or config.num_labels == 1
        self.labels = [str(config.id2label.get(i, i)) for i in range(config.num_labels)]

    @property
    def runtime(self) -> str:
        return self.session.runtime

    def __call__(self, texts: Sequence[Text], batch_size: int = 32) -> list[Prediction]:
        if isinstance(texts, (str, tuple)):
            raise SlimbertError("pass a list of texts (or of (text, text) pairs), not a single one")
        if not texts:
            return []
        pairs = [t if isinstance(t, tuple) else (t,) for t in texts]
        if len({len(p) for p in pairs}) > 1:
            raise SlimbertError("mix of single texts and pairs: give all single texts or all (text, text) pairs")
        dataset = encode([Example(p, 0) for p in pairs], self.bundle.tokenizer, self.max_seq_len)
        logits = self.session.predict(dataset, batch_size, self.bundle.tokenizer.pad_token_id or 0)  # (N, C)
        if self.regression:
            return [Prediction(None, float(v)) for v in logits[:, 0]]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return [Prediction(self.labels[int(i)], float(p[i])) for p, i in zip(probs, probs.argmax(axis=1))]


def default_runtime(directory: Path | None) -> str:
    """The artifact's recorded serving runtime, else its first fast runtime, else PyTorch."""
    if directory is None:
        return "pytorch"
    if is_slimbert_artifact(directory):
        recorded = read_manifest(directory).get("serving_runtime")
        if recorded in available_runtimes(directory):
            return recorded
    fast = [r for r in available_runtimes(directory) if r != "pytorch"]
    return fast[0] if fast else "pytorch"


def pipeline(model: str | os.PathLike, runtime: str | None = None, threads: int | None = None) -> Pipeline:
    """A ready-to-call classifier of ``model`` (a slimbert artifact or any fine-tuned model spec) on ``runtime``."""
    if runtime is not None and runtime not in RUNTIMES:
        raise SlimbertError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    source = resolve_model_source(model)
    directory = Path(source) if Path(source).is_dir() else None
    bundle = load_model(model)
    chosen = runtime or default_runtime(directory)
    settings, _ = RunSettings().for_model(shape_of(bundle.model).max_positions, str(model))
    return Pipeline(bundle, open_session(bundle, directory, chosen, threads), settings.seq_len)
