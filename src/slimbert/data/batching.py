"""Batches for inference: length-sorted (little padding), padded by the collator, results back in dataset order."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from slimbert.data.encoding import EncodedDataset, PadCollator


def length_sorted_batches(dataset: EncodedDataset, batch_size: int) -> list[list[int]]:
    """Index batches of similar lengths (longest first), so that evaluation pads little."""
    order = sorted(range(len(dataset)), key=lambda i: -len(dataset.features["input_ids"][i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def predict_batches(dataset: EncodedDataset, batch_size: int, pad_token_id: int,
                    run: Callable[[dict[str, torch.Tensor]], np.ndarray]) -> np.ndarray:
    """Run ``run`` over length-sorted padded batches; return outputs (N, C) in dataset order."""
    collate = PadCollator(pad_token_id)
    out: np.ndarray | None = None
    for idx in length_sorted_batches(dataset, batch_size):
        batch = collate([dataset[i] for i in idx])
        batch.pop("labels")
        logits = run(batch)
        if out is None:
            out = np.zeros((len(dataset), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)
