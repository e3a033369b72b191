"""Task metrics: accuracy, F1, Matthews correlation, Pearson/Spearman."""

from __future__ import annotations

import numpy as np

from slimbert.data.tasks import TaskSpec


def predictions_from_logits(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification; the single output for regression. logits: (N, C)."""
    return logits[:, 0] if task.is_regression else logits.argmax(axis=-1)


def _correlation(fn, predictions: np.ndarray, labels: np.ndarray) -> float:
    """A correlation, 0.0 when undefined (constant predictions, as from an untrained regressor)."""
    predictions = predictions.astype(np.float64)
    if np.ptp(predictions) < 1e-9 or np.ptp(labels) == 0:
        return 0.0
    return float(fn(predictions, labels)[0])


def compute_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics, each a float in natural units (accuracy 0..1, correlations -1..1)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    out: dict[str, float] = {}
    for name in task.metrics:
        if name == "accuracy":
            out[name] = float((predictions == labels).mean())
        elif name == "f1":
            out[name] = float(f1_score(labels, predictions, pos_label=1, zero_division=0))
        elif name == "macro_f1":
            out[name] = float(f1_score(labels, predictions, average="macro", zero_division=0))
        elif name == "mcc":
            out[name] = float(matthews_corrcoef(labels, predictions))
        elif name in ("pearson", "spearman"):
            out[name] = _correlation(pearsonr if name == "pearson" else spearmanr, predictions, labels)
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def majority_class_metrics(task: TaskSpec, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics of always predicting the most frequent label (a regression's mean score):
    the floor a model must beat to have learned anything."""
    if task.is_regression:
        return compute_metrics(task, np.full(len(labels), float(np.mean(labels))), labels)
    values, counts = np.unique(labels, return_counts=True)
    return compute_metrics(task, np.full(len(labels), values[np.argmax(counts)]), labels)


def top_prediction_share(task: TaskSpec, predictions: np.ndarray) -> float:
    """The share of examples given the most frequent predicted class (1.0: one class for everything).
    For regression, 1.0 when the predictions are (nearly) constant, else 0.0."""
    if len(predictions) == 0:
        return 0.0
    if task.is_regression:
        return 1.0 if np.ptp(predictions.astype(np.float64)) < 1e-6 else 0.0
    return float(np.unique(predictions, return_counts=True)[1].max() / len(predictions))
