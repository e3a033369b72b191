"""One seed for every random number a run draws before and during training.

A new classification head, a randomly initialised student or a distillation projection is created
*before* the training loop seeds itself, so ``finetune`` and ``compress`` seed here first: the same
command with the same ``--seed`` then gives bit-identical weights.
"""

from __future__ import annotations


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and CUDA)."""
    from accelerate.utils import set_seed

    set_seed(seed)
