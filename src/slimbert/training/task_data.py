"""A task's examples, tokenized per tokenizer and truncated/subsampled per the run settings, and its evaluation."""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np

from slimbert.data.encoding import EncodedDataset, encode
from slimbert.data.holdout import sentence_disjoint_split
from slimbert.data.loaders import TaskData
from slimbert.data.tasks import TaskSpec
from slimbert.errors import DataError
from slimbert.training.evaluate import Evaluation, evaluate, evaluation_from_logits
from slimbert.training.settings import RunSettings

SUBSET_SEED = 0  # training subsets (--max-train-samples) are the same whatever the training seed
HOLDOUT_SEED = 1  # which training examples are held out (the same whatever the training seed)
HELDOUT_SPLIT = "heldout"


class TaskDataset:
    """A task's examples, tokenized per tokenizer and truncated/subsampled per the run settings."""

    def __init__(self, task: TaskSpec, settings: RunSettings):
        self.settings = settings
        self.data = TaskData(task, settings.data_dir)
        self._encoded: dict[tuple[int, str], Any] = {}
        self._held_split: tuple[list, list] | None = None  # (training, held-out): computed once

    @property
    def task(self) -> TaskSpec:
        return self.data.task

    def _split_train(self, subsample: bool = True) -> tuple[list, list]:
        """(training examples, held-out examples): ``holdout`` examples of the training split are set aside
        (seeded, independent of the training seed) and never trained on (``holdout_mode`` sentences: whole
        sentences, and every training phrase inside one is dropped too); the rest is subsampled per
        --max-train-samples (unless ``subsample`` is false)."""
        if self._held_split is None:
            self._held_split = self._hold_out(list(self.data.examples("train")))
        examples, held = list(self._held_split[0]), self._held_split[1]
        n = self.settings.max_train_samples
        if subsample and n is not None and n < len(examples):
            random.Random(SUBSET_SEED).shuffle(examples)
            examples = examples[:n]
        return examples, held

    def _hold_out(self, examples: list) -> tuple[list, list]:
        k = self.settings.holdout
        if not k:
            return examples, []
        if k >= len(examples):
            raise DataError(f"{self.task.name}: holdout {k} leaves no training examples (the split has "
                            f"{len(examples)})")
        if self.settings.holdout_mode == "sentences":
            return sentence_disjoint_split(examples, k, HOLDOUT_SEED)
        random.Random(HOLDOUT_SEED).shuffle(examples)
        return examples[k:], examples[:k]

    def train_examples(self, subsample: bool = True) -> list:
        """The training examples (without the held-out ones), subsampled per --max-train-samples unless
        ``subsample`` is false (e.g. a vocabulary drawn from all the training text of a shortened run)."""
        return self._split_train(subsample)[0]

    def heldout_examples(self) -> list:
        """The held-out training examples (empty without ``holdout``): a split for choosing between models
        that is neither trained on nor the dev set."""
        return self._split_train()[1]

    def train_set(self, tokenizer) -> EncodedDataset:
        key = (id(tokenizer), "train")
        if key not in self._encoded:
            self._encoded[key] = encode(self.train_examples(), tokenizer, self.settings.seq_len)
        return self._encoded[key]

    def eval_sets(self, tokenizer) -> dict[str, EncodedDataset]:
        """The evaluation splits: the task's dev split(s), or the held-out training examples when the run
        evaluates on them (``eval_split: heldout``)."""
        key = (id(tokenizer), "eval")
        if key not in self._encoded:
            n = self.settings.max_eval_samples
            if self.settings.eval_split == "heldout":
                held = self.heldout_examples()
                if not held:
                    raise DataError("eval_split heldout needs holdout > 0 training examples set aside")
                splits = {HELDOUT_SPLIT: held}
            else:
                splits = {split: self.data.examples(split) for split in self.data.eval_splits()}
            self._encoded[key] = {split: encode(examples[:n] if n else examples, tokenizer, self.settings.seq_len)
                                  for split, examples in splits.items()}
        return self._encoded[key]

    def evaluate(self, model, tokenizer, batch_size: int = 128) -> dict[str, float]:
        return evaluate(model, self.task, self.eval_sets(tokenizer), batch_size, tokenizer.pad_token_id or 0)

    def evaluation(self, predict: Callable[[EncodedDataset], np.ndarray], tokenizer) -> Evaluation:
        """Metrics and degeneracy facts of any runtime's ``predict(dataset) -> logits (N, C)``."""
        eval_sets = self.eval_sets(tokenizer)
        return evaluation_from_logits(self.task, {s: predict(d) for s, d in eval_sets.items()}, eval_sets)
