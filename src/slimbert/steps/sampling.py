"""A fixed sample of task training data, as padded batches, for importance and contribution scores."""

from __future__ import annotations

import torch

from slimbert.data.batching import length_sorted_batches
from slimbert.data.encoding import EncodedDataset, PadCollator
from slimbert.steps.context import StepContext

SAMPLE_SEED = 0  # the same examples on every run, so a resumed recipe recomputes the same scores


def sample_batches(ctx: StepContext, tokenizer, samples: int, batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """Up to ``samples`` training examples (seeded choice), padded into length-sorted batches with labels."""
    dataset = ctx.data.train_set(tokenizer)
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(SAMPLE_SEED))[:samples].tolist()
    subset = EncodedDataset({k: [v[i] for i in chosen] for k, v in dataset.features.items()},
                            [dataset.labels[i] for i in chosen])
    collate = PadCollator(tokenizer.pad_token_id or 0, ctx.task.is_regression)
    return [collate([subset[i] for i in idx]) for idx in length_sorted_batches(subset, batch_size)]
