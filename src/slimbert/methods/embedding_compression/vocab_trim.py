"""``method: vocab-trim``: keep only the word pieces a task uses (vocabulary trimming of the embedding matrix).

A fine-tuned classifier reads a small part of its 30k-piece vocabulary. The kept set is every piece in
the task's training data as this run reads it (never the dev set; the held-out split, when set, is not
training data either), the tokenizer's special tokens, and optionally the ``corpus_top`` most frequent
pieces of a user corpus (``corpus``: a text file, one text per line). The table keeps those rows
(:class:`~slimbert.methods.embedding_compression.common.trimmed_embedding.TrimmedEmbedding`); the
tokenizer is unchanged, so the original segmentation is kept exactly, and a piece outside the kept set
reads the [UNK] row. Logits on text whose pieces were all kept are unchanged; no training is needed.

The report notes the coverage of the dev set (the share of its word pieces, and of its examples, entirely
inside the kept set), measured, not used to choose. The artifact's manifest records where the
vocabulary came from (``vocabulary`` in the step's history).

It touches only the embedding table, so it may follow quantization of the encoder (e.g. on a finished
int8 artifact), as long as the table itself is still plain.

No accuracy-gate fallback: the kept set is what the data uses; add a ``corpus`` to widen it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from slimbert.config import MethodConfig
from slimbert.data.encoding import encode
from slimbert.errors import ConfigError, DataError
from slimbert.methods.embedding_compression.common.trimmed_embedding import TrimmedEmbedding
from slimbert.model_shape import ModelShape
from slimbert.models.bundle import ModelBundle
from slimbert.models.structure import plain_word_table, set_module
from slimbert.steps.context import StepContext
from slimbert.steps.registry import register_method


@dataclass(frozen=True)
class VocabTrimConfig(MethodConfig):
    """Keep only the word pieces of the task's training data (+ specials, + a user corpus's most frequent)."""

    corpus: str | None = None
    corpus_top: int = 0

    def validate(self) -> None:
        if self.corpus_top < 0:
            raise ConfigError(f"corpus_top must be >= 0, got {self.corpus_top}")
        if self.corpus_top and not self.corpus:
            raise ConfigError("corpus_top needs a corpus (a text file, one text per line)")
        if self.corpus and not Path(self.corpus).is_file():
            raise ConfigError(f"corpus {self.corpus!r} is not a file; give a text file with one text per line")

    def plan(self, model: ModelShape, teacher: ModelShape) -> ModelShape:
        if model.embedding_factor_dim is not None or model.embedding_rows is not None:
            raise ConfigError("the word embeddings are already factored or trimmed; put vocab-trim first")
        return replace(model, embedding_rows=model.vocab_size)  # the kept count depends on the data


def corpus_pieces(tokenizer, path: str, top: int) -> list[int]:
    """The ``top`` most frequent piece ids of a text file (one text per line)."""
    counts: Counter[int] = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            counts.update(tokenizer(line.strip(), add_special_tokens=False)["input_ids"])
    return [i for i, _ in counts.most_common(top)]


@register_method("vocab-trim", VocabTrimConfig, family="embedding-compression", after_quantization=True,
                 after_factorization=True, after_sharing=True)
def apply_vocab_trim(bundle: ModelBundle, cfg: VocabTrimConfig, ctx: StepContext) -> ModelBundle:
    """Vocabulary trimming: keep the word pieces of the task's training data; the others read [UNK]."""
    tokenizer = bundle.tokenizer
    if tokenizer.unk_token_id is None:
        raise ConfigError("vocab-trim maps pieces outside the kept set to [UNK], and this tokenizer has no unk token")
    path = bundle.arch.word_embeddings
    table = plain_word_table(bundle.model, "vocab-trim")
    # All the training text (not the --max-train-samples subset a shortened run trains on; never the held-out part).
    examples = ctx.data.train_examples(subsample=False)
    if not examples:
        raise DataError("vocab-trim keeps the word pieces of the training data, and this run has no training "
                        "examples; check the task's train split")
    train = encode(examples, tokenizer, ctx.settings.seq_len)
    kept = {i for ids in train.features["input_ids"] for i in ids}
    kept |= set(tokenizer.all_special_ids)
    corpus = corpus_pieces(tokenizer, cfg.corpus, cfg.corpus_top) if cfg.corpus and cfg.corpus_top else []
    kept |= set(corpus)
    kept = {i for i in kept if 0 <= i < table.num_embeddings}
    trimmed = TrimmedEmbedding.from_embedding(table, sorted(kept), tokenizer.unk_token_id)
    set_module(bundle.model, path, trimmed)

    coverage = []
    for split, dataset in ctx.data.eval_sets(tokenizer).items():
        pieces = [i for ids in dataset.features["input_ids"] for i in ids]
        inside = sum(i in kept for i in pieces)
        whole = sum(all(i in kept for i in ids) for ids in dataset.features["input_ids"])
        coverage.append(f"{split}: {inside / max(len(pieces), 1):.2%} of word pieces, "
                        f"{whole / max(len(dataset), 1):.2%} of examples entirely kept")
    source = f"word pieces of {len(train):,} {ctx.task.name} training examples + special tokens" + (
        f" + the {cfg.corpus_top:,} most frequent pieces of {cfg.corpus}" if corpus else "")
    ctx.note(f"vocabulary {table.num_embeddings:,} -> {len(kept):,} pieces ({table.num_embeddings / len(kept):.2f}x "
             f"smaller table), from the {source}; coverage (not used to choose) {'; '.join(coverage)}")
    bundle.history.append({"vocabulary": source, "kept_pieces": len(kept), "original_pieces": table.num_embeddings})
    ctx.claim("size", "disk", True, f"word-embedding table {table.num_embeddings:,} -> {len(kept):,} rows")
    ctx.claim("speed", "pytorch", False, "the same FLOPs: one more index lookup per token")
    return bundle
