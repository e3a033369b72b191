"""Data augmentation for distillation (TinyBERT, Jiao et al. 2020; Tang et al. 2019).

Each original example yields ``copies`` new ones, or more where ``min_total_examples`` asks for a
larger set: a small task (MRPC's 3,668 pairs) then gets as many copies as it takes to reach that
size, while a large one (32,000 SST-2 sentences) keeps ``copies`` -- one recipe serves both. Per
word piece: with ``mask_prob`` it becomes [MASK] (Tang et al.'s masking), with ``replace_prob`` it
is replaced by a near neighbour -- candidates come from a masked-LM's top predictions when an MLM
model is given (TinyBERT's choice; e.g. bert-base-uncased online) and otherwise from the K nearest
word pieces in the teacher's embedding space (TinyBERT uses GloVe neighbours; the teacher's own
embeddings need no download). Continuation pieces (##x) are only replaced by continuation pieces, so
words stay well-formed. With ``ngram_prob`` a single-sentence example is cut to a random n-gram of
1-5 words (Tang et al.'s n-gram sampling). The teacher then labels every augmented example.

Generation is batched, shows a progress bar, and is cached on disk (``$SLIMBERT_CACHE``,
default ``~/.cache/slimbert``) keyed by the data, the teacher and the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from slimbert.config import check_range
from slimbert.data.encoding import encode
from slimbert.data.loaders import Example
from slimbert.errors import ConfigError
from slimbert.models.structure import arch_of, get_module
from slimbert.training.evaluate import predict
from slimbert.training.progress import console

CACHE_ENV = "SLIMBERT_CACHE"


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 4
    replace_prob: float = 0.3
    mask_prob: float = 0.1
    ngram_prob: float = 0.25
    max_ngram: int = 5
    neighbours: int = 15
    mlm_model: str | None = None  # e.g. bert-base-uncased: MLM candidates instead of embedding neighbours
    max_examples: int | None = None  # augment at most this many originals
    # Raise the copies per example until originals + augmented reach at least this many examples,
    # to at most max_copies (a tiny set, e.g. a demo's 1,500 sentences, is not multiplied without bound).
    min_total_examples: int | None = None
    max_copies: int | None = None
    seed: int = 0

    def validate(self) -> None:
        for name in ("replace_prob", "mask_prob", "ngram_prob"):
            check_range(name, getattr(self, name), 0, 1)
        if self.replace_prob + self.mask_prob > 1:
            raise ConfigError("replace_prob + mask_prob must be <= 1")
        if self.copies < 1 or self.neighbours < 1 or self.max_ngram < 1:
            raise ConfigError("copies, neighbours and max_ngram must be >= 1")
        if self.min_total_examples is not None and self.min_total_examples < 1:
            raise ConfigError(f"min_total_examples must be >= 1 (or unset), got {self.min_total_examples}")
        if self.max_copies is not None and self.max_copies < self.copies:
            raise ConfigError(f"max_copies ({self.max_copies}) must be >= copies ({self.copies})")

    def copies_for(self, originals: int) -> int:
        """Copies per example for a set of ``originals``: ``copies``, or more so that
        originals * (1 + copies) >= ``min_total_examples``, but no more than ``max_copies``."""
        if not self.min_total_examples or originals < 1:
            return self.copies
        needed = max(self.copies, -(-self.min_total_examples // originals) - 1)
        return min(needed, self.max_copies) if self.max_copies is not None else needed


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "slimbert")) / "augment"


def nearest_neighbours(embeddings: torch.Tensor, ids: list[int], k: int, allowed: torch.Tensor,
                       chunk: int = 1024) -> dict[int, list[int]]:
    """The ``k`` most cosine-similar allowed vocabulary ids for each of ``ids``. embeddings: (V, d)."""
    normed = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    out: dict[int, list[int]] = {}
    for start in range(0, len(ids), chunk):
        batch = torch.tensor(ids[start:start + chunk])
        sims = normed[batch] @ normed.T  # (n, V)
        sims[:, ~allowed] = -2.0
        sims[torch.arange(len(batch)), batch] = -2.0  # never the piece itself
        top = sims.topk(min(k, sims.shape[1]), dim=-1)
        for j, i in enumerate(batch.tolist()):
            choices = [c for c, v in zip(top.indices[j].tolist(), top.values[j].tolist()) if v > -2.0]
            if choices:  # a piece with no allowed neighbour is simply never replaced
                out[i] = choices
    return out


class Augmenter:
    """Generates augmented texts for a tokenizer and teacher (see module docstring)."""

    def __init__(self, cfg: AugmentConfig, tokenizer, teacher: torch.nn.Module):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.teacher = teacher
        vocab = tokenizer.get_vocab()
        self.id_to_piece = {i: p for p, i in vocab.items()}
        size = max(vocab.values()) + 1
        special = set(tokenizer.all_special_ids)
        self.word_start = torch.tensor([i not in special and not self.id_to_piece.get(i, "##").startswith("##")
                                        for i in range(size)])
        self.continuation = torch.tensor([i not in special and self.id_to_piece.get(i, "").startswith("##")
                                          for i in range(size)])
        self._neighbours: dict[int, list[int]] = {}
        self.mlm = None
        if cfg.mlm_model:
            from transformers import AutoModelForMaskedLM

            from slimbert.models.loading import resolve_model_source

            self.mlm = AutoModelForMaskedLM.from_pretrained(resolve_model_source(cfg.mlm_model)).eval()

    @staticmethod
    def _fit(mask: torch.Tensor, size: int) -> torch.Tensor:
        """``mask`` cut or padded (with False) to ``size`` entries."""
        return torch.cat([mask, torch.zeros(max(0, size - len(mask)), dtype=torch.bool)])[:size]

    def _prepare_neighbours(self, piece_ids: set[int]) -> None:
        """Neighbours come from the pieces of the data itself: a 30k-piece vocabulary's nearest
        neighbours are often pieces of other scripts, which make poor English substitutes."""
        missing = sorted(i for i in piece_ids if i not in self._neighbours)
        if not missing:
            return
        emb = get_module(self.teacher, arch_of(self.teacher).word_embeddings).weight.detach().cpu()
        rows = emb.shape[0]  # the embedding table may have more rows than the tokenizer has pieces
        seen = torch.zeros(rows, dtype=torch.bool)
        seen[torch.tensor([i for i in piece_ids if i < rows], dtype=torch.long)] = True

        def fit(mask: torch.Tensor) -> torch.Tensor:
            return self._fit(mask, rows) & seen

        starts = [i for i in missing if self.word_start[i]]
        conts = [i for i in missing if self.continuation[i]]
        if starts:
            self._neighbours.update(nearest_neighbours(emb, starts, self.cfg.neighbours, fit(self.word_start)))
        if conts:
            self._neighbours.update(nearest_neighbours(emb, conts, self.cfg.neighbours, fit(self.continuation)))

    def _augment_text(self, ids: list[int], rng: random.Random,
                      single_sentence: bool) -> tuple[list[int], list[tuple[int, int]]]:
        """New piece ids, and (position, original piece) of each [MASK] the MLM is to fill."""
        out, mlm_positions = [], []
        for pos, piece in enumerate(ids):
            r = rng.random()
            if r < self.cfg.mask_prob:
                out.append(self.tokenizer.mask_token_id)
            elif r < self.cfg.mask_prob + self.cfg.replace_prob and piece in self._neighbours:
                if self.mlm is not None:
                    mlm_positions.append((pos, piece))
                    out.append(self.tokenizer.mask_token_id)
                else:
                    out.append(rng.choice(self._neighbours[piece]))
            else:
                out.append(piece)
        if single_sentence and rng.random() < self.cfg.ngram_prob:
            starts = [i for i, p in enumerate(out) if not self.continuation[p]] or [0]
            first = rng.randrange(len(starts))
            n = rng.randint(1, self.cfg.max_ngram)
            end = starts[first + n] if first + n < len(starts) else len(out)
            begin = starts[first]
            mlm_positions = [(p - begin, piece) for p, piece in mlm_positions if begin <= p < end]
            out = out[begin:end]
        return out, mlm_positions

    def _fill_with_mlm(self, texts: list[list[int]], positions: list[list[tuple[int, int]]], rng: random.Random) -> None:
        """Replace the chosen [MASK]s by one of the MLM's top-K predictions, in batches.

        Candidates are real pieces of the same kind as the replaced one (word start or ##continuation).
        """
        todo = [i for i, p in enumerate(positions) if p]
        for start in range(0, len(todo), 64):
            idx = todo[start:start + 64]
            batch = [[self.tokenizer.cls_token_id] + texts[i] + [self.tokenizer.sep_token_id] for i in idx]
            longest = max(map(len, batch))
            ids = torch.tensor([b + [self.tokenizer.pad_token_id] * (longest - len(b)) for b in batch])
            mask = (ids != self.tokenizer.pad_token_id).long()
            with torch.no_grad():
                logits = self.mlm(input_ids=ids, attention_mask=mask).logits  # (n, T, V)
            vocab = logits.shape[-1]
            kinds = {kind: self._fit(mask_, vocab) for kind, mask_ in (("start", self.word_start),
                                                                       ("cont", self.continuation))}
            for row, i in enumerate(idx):
                for pos, original in positions[i]:
                    kind = "cont" if self.continuation[original] else "start"
                    scores = logits[row, pos + 1].masked_fill(~kinds[kind], float("-inf"))
                    top = scores.topk(self.cfg.neighbours).indices.tolist()
                    texts[i][pos] = rng.choice(top)

    def generate(self, examples: list[Example]) -> list[tuple[str, ...]]:
        """``copies`` augmented text tuples per example, in order."""
        rng = random.Random(self.cfg.seed)
        tokenized = [[self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(t)) for t in e.texts] for e in examples]
        self._prepare_neighbours({i for ex in tokenized for text in ex for i in text})
        single = bool(examples) and len(examples[0].texts) == 1
        flat_ids, flat_pos = [], []
        for ex in tokenized:
            for _ in range(self.cfg.copies):
                for text in ex:
                    new, pos = self._augment_text(text, rng, single)
                    flat_ids.append(new)
                    flat_pos.append(pos)
        if self.mlm is not None:
            self._fill_with_mlm(flat_ids, flat_pos, rng)
        strings = [self.tokenizer.convert_tokens_to_string(self.tokenizer.convert_ids_to_tokens(ids)) for ids in flat_ids]
        width = len(examples[0].texts) if examples else 1
        return [tuple(strings[i:i + width]) for i in range(0, len(strings), width)]


def _fingerprint(examples: list[Example], teacher: torch.nn.Module, cfg: AugmentConfig, max_seq_len: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(str(max_seq_len).encode())
    for e in examples:
        h.update(repr((e.texts, e.label)).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        if name.endswith(("classifier.weight", "classifier.out_proj.weight", "word_embeddings.weight")):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes()[:1 << 20])
    return h.hexdigest()[:24]


def augment_examples(examples: list[Example], tokenizer, teacher: torch.nn.Module, cfg: AugmentConfig, *,
                     regression: bool, max_seq_len: int = 128, log=console.print) -> list[Example]:
    """Augmented copies of ``examples`` labelled by the teacher (argmax class, or score); cached on disk."""
    originals = examples[: cfg.max_examples] if cfg.max_examples else examples
    # The copies fixed for this set, so that the cache key and the generator see one number.
    cfg = replace(cfg, copies=cfg.copies_for(len(originals)), min_total_examples=None, max_copies=None)
    path = cache_dir() / f"{_fingerprint(originals, teacher, cfg, max_seq_len)}.jsonl"
    if path.is_file():
        log(f"augmentation: reusing {path}")
        return [Example(tuple(r["texts"]), r["label"]) for r in map(json.loads, path.read_text().splitlines())]
    log(f"augmentation: generating {cfg.copies} copies of {len(originals)} examples")
    augmenter = Augmenter(cfg, tokenizer, teacher)
    chunk = 2048
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("augmenting + teacher labelling", total=len(originals))
        labelled: list[Example] = []
        for start in range(0, len(originals), chunk):
            part = originals[start:start + chunk]
            new_texts = augmenter.generate(part)
            placeholder = [Example(t, 0.0 if regression else 0) for t in new_texts]
            logits = predict(teacher, encode(placeholder, tokenizer, max_seq_len),
                             pad_token_id=tokenizer.pad_token_id or 0)
            labels = logits[:, 0].tolist() if regression else logits.argmax(-1).tolist()
            labelled.extend(Example(t, float(y) if regression else int(y)) for t, y in zip(new_texts, labels))
            progress.update(task, advance=len(part))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({"texts": list(e.texts), "label": e.label}) + "\n" for e in labelled))
    tmp.replace(path)
    return labelled
