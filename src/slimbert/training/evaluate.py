"""Prediction and evaluation on PyTorch models (ONNX Runtime has its own in slimbert.export)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slimbert.data.batching import predict_batches
from slimbert.data.encoding import EncodedDataset
from slimbert.data.metrics import compute_metrics, predictions_from_logits
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
