"""A task's examples, tokenized per tokenizer and truncated/subsampled per the run settings, and its evaluation."""

from __future__ import annotations

import random
from typing import Any

from slimbert.data.encoding import EncodedDataset, encode
from slimbert.data.loaders import TaskData
from slimbert.data.tasks import TaskSpec
from slimbert.training.evaluate import evaluate
from slimbert.training.settings import RunSettings

SUBSET_SEED = 0  # training subsets (--max-train-samples) are the same whatever the training seed


class TaskDataset:
    """A task's examples, tokenized per tokenizer and truncated/subsampled per the run settings."""

    def __init__(self, task: TaskSpec, settings: RunSettings):
        self.settings = settings
        self.data = TaskData(task, settings.data_dir)
        self._encoded: dict[tuple[int, str], Any] = {}

    @property
    def task(self) -> TaskSpec:
        return self.data.task

    def train_examples(self) -> list:
        """The training examples, subsampled (seeded, independent of the training seed) per --max-train-samples."""
        examples = list(self.data.examples("train"))
        n = self.settings.max_train_samples
        if n is not None and n < len(examples):
            random.Random(SUBSET_SEED).shuffle(examples)
            examples = examples[:n]
        return examples

    def train_set(self, tokenizer) -> EncodedDataset:
        key = (id(tokenizer), "train")
        if key not in self._encoded:
            self._encoded[key] = encode(self.train_examples(), tokenizer, self.settings.seq_len)
        return self._encoded[key]

    def eval_sets(self, tokenizer) -> dict[str, EncodedDataset]:
        key = (id(tokenizer), "eval")
        if key not in self._encoded:
            n = self.settings.max_eval_samples
            self._encoded[key] = {
                split: encode(self.data.examples(split)[:n] if n else self.data.examples(split), tokenizer,
                              self.settings.seq_len)
                for split in self.data.eval_splits()
            }
        return self._encoded[key]

    def evaluate(self, model, tokenizer, batch_size: int = 128) -> dict[str, float]:
        return evaluate(model, self.task, self.eval_sets(tokenizer), batch_size, tokenizer.pad_token_id or 0)
