"""Deterministic, length-grouped batch order (resumable: a pure function of seed and epoch).

Grouping by length (shuffle, then sort inside mega-batches of 50 batches) keeps batches of
similar length together, so dynamic padding wastes little compute (SST-2's train phrases average
13.5 tokens but a random batch pads to about 35); batch order is shuffled again so training still
sees random lengths.
"""

from __future__ import annotations

import torch

MEGABATCH = 50


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True) -> list[list[int]]:
    """Index batches for one epoch; the same (seed, epoch) always gives the same batches."""
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    if not group_by_length:
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    mega = batch_size * MEGABATCH
    batches: list[list[int]] = []
    for start in range(0, len(perm), mega):
        chunk = sorted(perm[start:start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in shuffled]


class EpochBatchSampler(torch.utils.data.Sampler):
    """A batch sampler over :func:`batch_order`.

    ``set_position(epoch, skip)`` selects the epoch and skips its first ``skip`` batches: that is
    how a resumed run continues mid-epoch with exactly the batches it had not seen.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0
        self.skip = 0

    def set_position(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip

    def __iter__(self):
        order = batch_order(self.lengths, self.batch_size, self.seed, self.epoch, self.group_by_length)
        yield from order[self.skip:]

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
