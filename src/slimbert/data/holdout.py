"""A held-out split that shares no text with the training examples: whole sentences, their phrases removed.

SST-2's training split is every phrase of the parse trees of about 6,900 sentences (67,349 rows), so a random
held-out row is usually a piece of a training row: 1,793 of 2,000 random held-out phrases occur verbatim inside one
(``benchmarks/probes/heldout_overlap.py``), against 2 of the 872 dev sentences. Choosing models on such a split
rewards memorising phrases and shrinks every gap. This split holds out whole texts (texts that are not a word span of
any other training text: SST-2's sentences, median 19 words like its dev set) and drops from training every text that
is a word span of a held-out one (its phrases), so a held-out sentence is as new to the model as a dev sentence.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from slimbert.errors import DataError

Example = TypeVar("Example")


def word_spans(text: str) -> set[str]:
    """Every contiguous run of whitespace-separated words of ``text`` (itself included), joined by single spaces.

    SST-2's texts are tokenized with spaces, so a phrase of a sentence is exactly one of its word spans.
    """
    words = text.split()
    return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


def _text(example) -> str:
    texts = example.texts
    if len(texts) != 1:
        raise DataError("holdout_mode 'sentences' holds out whole sentences of a single-text task (SST-2's parse-tree "
                        f"phrases); this task has {len(texts)} texts per example: use holdout_mode 'random'")
    return " ".join(texts[0].split())


def sentence_disjoint_split(examples: Sequence[Example], k: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(training examples, ``k`` held-out examples): the held-out ones are whole texts, seeded, and no training
    text is a word span of a held-out text.

    A text is whole when it is no word span of another training text (it may repeat: every copy is held out
    together). Cost: one pass over every word span of every text (about 3.4M for SST-2, a few seconds).
    """
    texts = [_text(e) for e in examples]
    distinct = set(texts)
    inside_another: set[str] = set()
    for text in distinct:
        inside_another.update(s for s in word_spans(text) if s != text and s in distinct)
    whole = sorted(distinct - inside_another)  # sorted: the seeded draw must not depend on set order
    if k > len(whole):
        raise DataError(f"holdout {k} whole sentences asked for, but the training split has only {len(whole)} texts "
                        "that are not part of another one: lower --holdout")
    random.Random(seed).shuffle(whole)
    held_texts = set(whole[:k])
    phrases = set().union(*(word_spans(t) for t in held_texts))
    held = [e for e, t in zip(examples, texts) if t in held_texts]
    train = [e for e, t in zip(examples, texts) if t not in phrases]
    return train, held
