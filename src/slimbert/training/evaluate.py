"""Prediction and evaluation on PyTorch models (ONNX Runtime has its own in slimbert.export)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from slimbert.data.batching import predict_batches
from slimbert.data.encoding import EncodedDataset
from slimbert.data.metrics import compute_metrics, majority_class_metrics, predictions_from_logits, top_prediction_share
from slimbert.data.tasks import TaskSpec


@torch.no_grad()
def predict(model: nn.Module, dataset: EncodedDataset, batch_size: int = 128, pad_token_id: int = 0) -> np.ndarray:
    """Logits (N, C) of a PyTorch model over ``dataset``, in dataset order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device

    def run(batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        return model(**batch).logits.float().cpu().numpy()

    try:
        return predict_batches(dataset, batch_size, pad_token_id, run)
    finally:
        model.train(was_training)


def metrics_from_logits(task: TaskSpec, logits_by_split: dict[str, np.ndarray],
                        eval_sets: dict[str, EncodedDataset]) -> dict[str, float]:
    """Task metrics for each evaluation split, prefixed for multi-split tasks (MNLI)."""
    metrics: dict[str, float] = {}
    for split, logits in logits_by_split.items():
        labels = np.asarray(eval_sets[split].labels)
        preds = predictions_from_logits(task, logits)
        prefix = task.eval_prefix(split)
        metrics.update({prefix + k: v for k, v in compute_metrics(task, preds, labels).items()})
    return metrics


def evaluate(model: nn.Module, task: TaskSpec, eval_sets: dict[str, EncodedDataset], batch_size: int = 128,
             pad_token_id: int = 0) -> dict[str, float]:
    """The task's metrics of a PyTorch model on each evaluation split."""
    logits = {split: predict(model, ds, batch_size, pad_token_id) for split, ds in eval_sets.items()}
    return metrics_from_logits(task, logits, eval_sets)


@dataclass(frozen=True)
class Evaluation:
    """Metrics plus what it takes to tell a degenerate model: the share of the most frequent predicted class
    and the metrics of always predicting the majority label (per split, main metric first)."""

    metrics: dict[str, float]
    top_share: float  # over all evaluation splits
    majority: dict[str, float]


def evaluation_from_logits(task: TaskSpec, logits_by_split: dict[str, np.ndarray],
                           eval_sets: dict[str, EncodedDataset]) -> Evaluation:
    predictions = {s: predictions_from_logits(task, logits) for s, logits in logits_by_split.items()}
    majority: dict[str, float] = {}
    for split, dataset in eval_sets.items():
        prefix = task.eval_prefix(split)
        majority.update({prefix + k: v for k, v in majority_class_metrics(task, np.asarray(dataset.labels)).items()})
    everything = np.concatenate(list(predictions.values())) if predictions else np.zeros(0)
    return Evaluation(metrics=metrics_from_logits(task, logits_by_split, eval_sets),
                      top_share=top_prediction_share(task, everything), majority=majority)


# A model is degenerate when it gives one class to at least this share of examples while its reference does not.
DEGENERATE_SHARE = 0.95


def degenerate_flags(evaluation: Evaluation, main_metric: str, reference: Evaluation | None = None) -> list[str]:
    """What makes a result degenerate, in words (empty when it is not): one class for nearly every example
    where the reference model does not, or a main metric at or below the majority-class baseline."""
    flags = []
    reference_share = reference.top_share if reference is not None else 0.0
    if evaluation.top_share >= DEGENERATE_SHARE and reference_share < DEGENERATE_SHARE:
        flags.append(f"degenerate: {evaluation.top_share:.0%} of the examples get the same prediction"
                     + (f" (the input model: {reference_share:.0%})" if reference is not None else ""))
    value, floor = evaluation.metrics.get(main_metric), evaluation.majority.get(main_metric)
    if value is not None and floor is not None and value <= floor + 1e-9:
        if reference is None or reference.metrics.get(main_metric, floor) > floor + 1e-9:
            flags.append(f"degenerate: {main_metric} {value * 100:.2f} is at or below the majority-class baseline "
                         f"{floor * 100:.2f}")
    return flags
