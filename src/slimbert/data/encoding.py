"""Tokenization with dynamic padding.

Examples are tokenized once (truncated to ``max_seq_len``) and kept unpadded; the collator pads
each batch only to its longest member, so short SST-2 phrases do not pay for 128 positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimbert.data.loaders import Example


@dataclass
class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples. ``features[name][i]`` is a list of ints; ``labels[i]`` an int or float."""

    features: dict[str, list[list[int]]]
    labels: list[int | float]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {name: values[i] for name, values in self.features.items()}
        item["labels"] = self.labels[i]
        return item

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.features["input_ids"]]

    def subset(self, n: int | None) -> "EncodedDataset":
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return EncodedDataset({k: v[:n] for k, v in self.features.items()}, self.labels[:n])


def encode(examples: list[Example], tokenizer, max_seq_len: int = 128) -> EncodedDataset:
    """Tokenize single sentences or sentence pairs, truncating to ``max_seq_len`` tokens."""
    firsts = [e.texts[0] for e in examples]
    seconds = [e.texts[1] for e in examples] if examples and len(examples[0].texts) > 1 else None
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_seq_len, padding=False)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc and n in tokenizer.model_input_names]
    return EncodedDataset({n: list(enc[n]) for n in names}, [e.label for e in examples])


class PadCollator:
    """Pads a list of items to the longest one; returns a dict of (B, T) tensors plus (B,) labels."""

    def __init__(self, pad_token_id: int, regression: bool = False):
        self.pad_token_id = pad_token_id
        self.regression = regression

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        batch: dict[str, torch.Tensor] = {}
        for name in items[0]:
            if name == "labels":
                continue
            pad = self.pad_token_id if name == "input_ids" else 0
            batch[name] = torch.tensor([it[name] + [pad] * (longest - len(it[name])) for it in items], dtype=torch.long)
        labels = [it["labels"] for it in items]
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if self.regression else torch.long)
        return batch
