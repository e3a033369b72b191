"""Pruning (survey section 3.2): unstructured masks stored sparsely, and structured physical removal.

Methods (one file per registered name): ``magnitude``, ``movement``, ``lottery-ticket``
(unstructured); ``prune-heads``, ``prune-ffn``, ``drop-layers``, ``layerdrop``, ``block-movement``
(structured). Machinery shared by several of them lives in :mod:`.common`.
"""

from slimbert.methods.pruning import (  # noqa: F401
    block_movement,
    drop_layers,
    layerdrop,
    lottery_ticket,
    magnitude,
    movement,
    prune_ffn,
    prune_heads,
)
