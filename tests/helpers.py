"""Builders for tiny models, tokenizers and data used across the tests."""

from __future__ import annotations

import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "nice", "superb", "lovely", "fun"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "ugly", "sad"]
NEUTRAL = ["the", "a", "movie", "film", "is", "was", "plot", "story", "very", "really", "and", "it", "this",
           "acting", "cast", "ending", "music", "scene", "quite", "so"]
TINY_WORDS = POSITIVE + NEGATIVE + NEUTRAL


def vocabulary() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = SPECIAL + TINY_WORDS + letters + [f"##{c}" for c in letters] + [".", ","]
    return vocab[:99]


def make_tokenizer(path: Path):
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocabulary())}, do_lower_case=True)
    tok.save_pretrained(path)
    return tok


def tiny_config(arch: str, num_labels: int = 2, **overrides):
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    common = dict(vocab_size=99, max_position_embeddings=64, num_labels=num_labels)
    if arch == "bert":
        cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                         type_vocab_size=2, **common)
    elif arch == "roberta":
        # RoBERTa offsets positions by padding_idx + 1, so it needs a few more position slots.
        common["max_position_embeddings"] = 80
        cfg = RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                            type_vocab_size=1, pad_token_id=0, bos_token_id=2, eos_token_id=3, **common)
    elif arch == "distilbert":
        cfg = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, pad_token_id=0, **common)
    else:
        raise ValueError(arch)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def make_tiny_model(arch: str, path: Path, tokenizer_dir: Path, num_labels: int = 2, seed: int = 0):
    """Save a random tiny sequence-classification model + tokenizer to ``path``."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    import json

    cfg = tiny_config(arch, num_labels)
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.save_pretrained(path)
    # A "base" checkpoint (no recorded task architecture): slimbert gives it a head per task.
    config = json.loads((path / "config.json").read_text())
    config.pop("architectures", None)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    tok = BertTokenizerFast.from_pretrained(tokenizer_dir)
    if arch != "bert":
        tok.model_input_names = ["input_ids", "attention_mask"]
    tok.save_pretrained(path)
    return model


def _sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(NEUTRAL, 3) + [rng.choice(POSITIVE if label else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def write_tiny_glue(root: Path, n_train: int = 256, n_dev: int = 64, seed: int = 0) -> Path:
    """SST-2, MRPC, STS-B and CoLA (headerless) in GLUE's TSV layout, learnable by a tiny model:
    the label (or the STS-B score / 5) is 1 when the first sentence holds a positive word."""
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = []
        for _ in range(n):
            y = rng.randint(0, 1)
            rows.append((_sentence(rng, y), y))
        d = root / "SST-2"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))

        d = root / "MRPC"
        d.mkdir(parents=True, exist_ok=True)
        lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"]
        for i in range(n):
            a, b = rng.randint(0, 1), rng.randint(0, 1)
            lines.append(f"{a}\t{i}\t{i + 1}\t{_sentence(rng, a)}\t{_sentence(rng, b)}\n")
        (d / f"{split}.tsv").write_text("".join(lines))

        d = root / "STS-B"
        d.mkdir(parents=True, exist_ok=True)
        lines = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"]
        for i in range(n):
            a, b = rng.randint(0, 1), rng.randint(0, 1)
            lines.append(f"{i}\tg\tf\t2012\t{i}\ts\ts\t{_sentence(rng, a)}\t{_sentence(rng, b)}\t{5.0 * a:.3f}\n")
        (d / f"{split}.tsv").write_text("".join(lines))

        d = root / "CoLA"
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for _ in range(n):
            y = rng.randint(0, 1)
            lines.append(f"src\t{y}\t\t{_sentence(rng, y)}\n")
        (d / f"{split}.tsv").write_text("".join(lines))
    return root


def synthetic_card(accuracy: float = 0.9, baseline_accuracy: float = 0.9, size_mb: float = 90.0,
                   baseline_size_mb: float = 90.0, latency_ms: float | None = 10.0, baseline_latency_ms: float = 12.0,
                   task: str = "sst2"):
    """A typed report card with the given headline figures (everything else plausible filler), for table and
    plot tests that need no real run."""
    from slimbert.measure.latency import LatencyStats
    from slimbert.report.card import Environment, ModelMeasurements, ParamCounts, ReportCard

    def stats(ms):
        return {"onnxruntime": {"b1s128": LatencyStats(ms, ms, ms, ms, ms, 5)}} if ms is not None else {}

    def side(acc, size, ms):
        return ModelMeasurements(metrics={"accuracy": acc}, size_mb=size, size_mb_no_embeddings=size / 2,
                                 weights_mb=size, params=ParamCounts(1000, 500, 1000), flops=10**9, latency_ms=stats(ms))

    env = Environment(date="2026-01-01T00:00:00+00:00", python="3.11", platform="test", cpu="test", cpu_count=2,
                      threads=2, cuda=None, versions={"torch": "x", "onnxruntime": "y"})
    return ReportCard(model="m", task=task, recipe={"name": "r", "steps": []}, eval_examples={"validation": 10},
                      flops_seq_len=128, baseline=side(baseline_accuracy, baseline_size_mb, baseline_latency_ms),
                      compressed=side(accuracy, size_mb, latency_ms), claims=(), notes=(), steps=(), environment=env)


def synthetic_record(card, name: str = "exp", plot: dict | None = None):
    """A compress benchmark record around ``card`` (an experiment with an optional ``plot`` block)."""
    from slimbert.bench.experiments import Experiment, PlotSpec
    from slimbert.bench.records import BenchRecord

    experiment = Experiment(name=name, kind="compress", task=card.task, model="m", recipe="r.yaml",
                            plot=PlotSpec(**plot) if plot else None)
    return BenchRecord(experiment=experiment, command=f"slimbert bench run {name}.yaml", seconds=1.0, result=card,
                       environment=card.environment)


def run_steps(bundle, steps: list[dict], task_data, work: Path):
    """Run ``steps`` as a recipe on ``bundle`` (checked against its shape first), distilling from a copy of it;
    returns the compressed bundle and the step context."""
    from slimbert.api import run_recipe
    from slimbert.models.shape import shape_of
    from slimbert.recipe import Recipe

    recipe = Recipe.from_dict({"name": "test", "steps": steps})
    recipe.check(shape_of(bundle.model))
    out, _, ctx = run_recipe(bundle, recipe, task_data, task_data.settings, work / "work", log=lambda m: None,
                             teacher=bundle.clone())
    return out, ctx
