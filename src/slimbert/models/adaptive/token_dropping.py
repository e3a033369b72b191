"""Which tokens go on to the next layer (PoWER-BERT, Goyal et al. ICML 2020).

The significance of a token is the attention it receives: the layer's attention probabilities summed over
heads and over the (real) query positions. Each example keeps the top ``ceil(retention * n)`` of its own
``n`` real tokens (never fewer than one), so an example keeps the same tokens alone or in a batch; [CLS]
(position 0) is always kept, since the task head reads it. The kept tokens are gathered out into a shorter
tensor (B, T') in their original order; rows that keep fewer than T' tokens are padded and masked.
"""

from __future__ import annotations

import torch


def significance(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention probabilities (B, H, T, T) and key mask (B, T) -> (B, T) attention received per token
    (padding: -inf)."""
    received = (probs * mask[:, None, :, None].to(probs.dtype)).sum(dim=(1, 2))  # (B, T): sum over heads, queries
    return received.masked_fill(mask == 0, float("-inf"))


def keep_counts(real_lengths: torch.Tensor, retention: float) -> torch.Tensor:
    """(B,) original real lengths -> (B,) tokens each example keeps at this layer (at least 1)."""
    return torch.clamp(torch.ceil(real_lengths.double() * retention - 1e-9).long(), min=1)


def select_tokens(hidden: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor,
                  counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep each row's ``counts[b]`` highest-scoring real tokens ([CLS] first).

    hidden (B, T, d), mask (B, T), scores (B, T), counts (B,) -> hidden (B, T', d), mask (B, T'), kept positions
    (B, T') into the input (padding slots point at 0), with T' = max(counts).
    """
    counts = torch.minimum(counts, mask.sum(-1))
    scores = scores.clone()
    scores[:, 0] = float("inf")  # [CLS] always stays
    width = int(counts.max())
    top = scores.topk(width, dim=-1).indices  # (B, T') best first
    slot = torch.arange(width, device=hidden.device)[None, :]  # (1, T')
    valid = slot < counts[:, None]  # (B, T')
    # Original order among the kept tokens (padding slots sort last).
    order_key = torch.where(valid, top, torch.full_like(top, hidden.shape[1]))
    positions = torch.where(valid, top, torch.zeros_like(top)).gather(1, order_key.argsort(dim=1))
    new_mask = valid.sort(dim=1, descending=True).values.to(mask.dtype)  # (B, T'): kept slots first
    gathered = hidden.gather(1, positions[:, :, None].expand(-1, -1, hidden.shape[-1]))  # (B, T', d)
    return gathered, new_mask, positions
