"""GLUE registry, loaders (real TSV/JSONL files and synthetic bad ones), encoding and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from slimbert.data.encoding import PadCollator, encode
from slimbert.data.loaders import Example, TaskData
from slimbert.data.metrics import compute_metrics
from slimbert.data.tasks import GLUE_TASKS, get_task
from slimbert.errors import DataError

# Row counts of the real GLUE copy (shared/data/README.md).
REAL_COUNTS = {
    ("cola", "train"): 8551, ("cola", "validation"): 1043,
    ("sst2", "train"): 67349, ("sst2", "validation"): 872,
    ("mrpc", "train"): 3668, ("mrpc", "validation"): 408,
    ("stsb", "train"): 5749, ("stsb", "validation"): 1500,
    ("rte", "train"): 2490, ("rte", "validation"): 277,
    ("qnli", "validation"): 5463,
    ("wnli", "train"): 635, ("wnli", "validation"): 71,
    ("mnli", "validation_matched"): 9815,
}


def test_registry_has_all_glue_tasks():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert get_task("SST-2") is get_task("sst2") is get_task("sst-2")
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").main_metric == "matched_accuracy"
    assert get_task("cola").main_metric == "mcc" and get_task("mrpc").main_metric == "f1"
    with pytest.raises(DataError, match="unknown task 'sst3'"):
        get_task("sst3")


@pytest.mark.parametrize("task, split", sorted(REAL_COUNTS))
def test_real_glue_files_parse(real_glue, task, split):
    data = TaskData(get_task(task), real_glue)
    examples = data.examples(split)
    assert len(examples) == REAL_COUNTS[(task, split)]
    spec = get_task(task)
    assert all(len(e.texts) == len(spec.text_fields) and all(isinstance(t, str) for t in e.texts) for e in examples)
    if not spec.is_regression:
        counts = np.bincount([e.label for e in examples], minlength=spec.num_labels)
        assert counts.min() > 0  # every class appears


def test_real_label_distributions(real_glue):
    # Published GLUE split statistics (shared/data/README.md).
    sst2 = TaskData(get_task("sst2"), real_glue).examples("train")
    assert sorted(np.bincount([e.label for e in sst2]).tolist()) == [29780, 37569]
    mnli = TaskData(get_task("mnli"), real_glue).examples("validation_matched")
    assert np.bincount([e.label for e in mnli]).tolist() == [3479, 3123, 3213]
    assert mnli[0].texts[0].startswith("The new rights are nice enough")


def test_mnli_mismatched_is_optional_and_missing_train_is_explained(real_glue):
    data = TaskData(get_task("mnli"), real_glue)
    assert data.eval_splits() == ["validation_matched"]
    with pytest.raises(DataError) as exc:
        TaskData(get_task("qnli"), real_glue).examples("train")
    msg = str(exc.value)
    assert "QNLI" in msg and "train.tsv" in msg and "SLIMBERT_DATA" in msg


def test_data_dir_from_environment(real_glue, monkeypatch):
    monkeypatch.setenv("SLIMBERT_DATA", str(real_glue))
    assert len(TaskData(get_task("rte")).examples("validation")) == 277
    # Pointing straight at the task folder works too.
    assert len(TaskData(get_task("rte"), real_glue / "RTE").examples("validation")) == 277


def test_no_data_anywhere_says_how_to_provide_it():
    with pytest.raises(DataError) as exc:
        TaskData(get_task("sst2")).examples("train")
    msg = str(exc.value)
    assert "no data directory is set" in msg and "SST-2/train.tsv" in msg and "--data-dir" in msg


def test_bad_data_dir():
    with pytest.raises(DataError, match="not a directory"):
        TaskData(get_task("sst2"), "/nonexistent/glue")


@pytest.mark.parametrize("content, fragment", [
    ("", "is empty"),
    ("sentence\tlabel\n", "has a header but no data rows"),
    ("text\tlabel\nnice\t1\n", "no text column; expected one of ['sentence']"),
    ("sentence\ty\nnice\t1\n", "no label column"),
    ("sentence\tlabel\nnice\t2\n", "label '2' is not in the label set of task sst2"),
    ("sentence\tlabel\nnice\n", "expected 2 columns, found 1"),
])
def test_malformed_files_name_file_and_problem(tmp_path, content, fragment):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text(content)
    with pytest.raises(DataError) as exc:
        TaskData(get_task("sst2"), tmp_path).examples("train")
    assert fragment in str(exc.value) and "train.tsv" in str(exc.value)


def test_regression_label_must_be_numeric(tmp_path):
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "dev.tsv").write_text("sentence1\tsentence2\tscore\na\tb\thigh\n")
    with pytest.raises(DataError, match="dev.tsv:2: label 'high' is not a number"):
        TaskData(get_task("stsb"), tmp_path).examples("validation")


def test_custom_csv_and_jsonl_task(tmp_path):
    (tmp_path / "train.csv").write_text('review,stars\n"great, really",pos\nawful,neg\nfine,pos\n')
    (tmp_path / "dev.jsonl").write_text('{"review": "good", "stars": "pos"}\n{"review": "bad", "stars": "neg"}\n')
    task = get_task(f"csv:{tmp_path}", text_cols=["review"], label_col="stars")
    data = TaskData(task)
    assert data.task.label_values == ("neg", "pos")
    assert data.examples("train")[0] == Example(("great, really",), 1)
    assert [e.label for e in data.examples("validation")] == [1, 0]
    (tmp_path / "dev.jsonl").write_text('{"review": "meh", "stars": "mixed"}\n')
    with pytest.raises(DataError, match="label 'mixed' is not in the label set"):
        TaskData(task).examples("validation")
    with pytest.raises(DataError, match="--text-col"):
        get_task(f"csv:{tmp_path}")
    with pytest.raises(DataError, match="custom task directory not found"):
        get_task(f"csv:{tmp_path}/nope", text_cols=["a"], label_col="b")


def test_encode_truncates_and_collator_pads(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    examples = [Example(("good movie",), 1), Example(("the plot was very boring and the acting was dull",), 0)]
    ds = encode(examples, tok, max_seq_len=8)
    assert ds.lengths() == [4, 8]  # [CLS] good movie [SEP]; the long one is truncated
    batch = PadCollator(tok.pad_token_id)([ds[0], ds[1]])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert batch["labels"].tolist() == [1, 0]
    pairs = encode([Example(("good", "bad movie"), 0)], tok, 16)
    assert pairs.features["token_type_ids"][0] == [0, 0, 0, 1, 1, 1]


def test_metrics_against_known_values():
    mrpc = get_task("mrpc")
    m = compute_metrics(mrpc, np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert m["accuracy"] == 0.75 and m["f1"] == pytest.approx(2 / 3)
    cola = compute_metrics(get_task("cola"), np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0]))
    assert cola["mcc"] == pytest.approx(1.0)
    stsb = compute_metrics(get_task("stsb"), np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.5]))
    assert stsb["spearman"] == pytest.approx(1.0) and 0.99 < stsb["pearson"] < 1.0


def _phrases(sentence: str) -> list[str]:
    """SST-2-style rows: a sentence and some of its phrases (contiguous word spans)."""
    words = sentence.split()
    return [sentence, " ".join(words[:2]), " ".join(words[1:]), words[-1]]


def test_sentence_disjoint_holdout_shares_no_text_with_training():
    """holdout_mode sentences: whole sentences are held out and every training phrase inside one is dropped, so
    no held-out text occurs in a training text (the random split's 1,793 of 2,000 on SST-2); phrases shared with a
    sentence that stays in training stay only if they are not inside a held-out one."""
    from slimbert.data.holdout import sentence_disjoint_split, word_spans

    sentences = [f"film {i} was quite good number {i}" for i in range(30)] + ["a dull and tired film"]
    rows = [Example(texts=(p,), label=i % 2) for i, s in enumerate(sentences) for p in _phrases(s)]
    rows.append(Example(texts=("film 3 was quite good number 3",), label=1))  # an exact duplicate of a sentence
    train, held = sentence_disjoint_split(rows, 5, seed=1)
    held_texts = {e.texts[0] for e in held}
    assert held_texts <= set(sentences) and len(held_texts) == 5  # whole sentences, never one of their phrases
    spans = set().union(*(word_spans(t) for t in held_texts))
    assert not any(e.texts[0] in spans for e in train)
    assert not any(h in t.texts[0] for h in held_texts for t in train)  # nothing held out occurs in training
    assert len(train) + len(held) < len(rows)  # phrases were dropped, not just moved
    kept = {e.texts[0] for e in train}
    assert set(sentences) - held_texts <= kept  # sentences not held out stay in training
    # Seeded: the same draw whatever the input order.
    again_train, again_held = sentence_disjoint_split(list(reversed(rows)), 5, seed=1)
    assert {e.texts[0] for e in again_held} == held_texts
    assert sorted(e.texts[0] for e in again_train) == sorted(e.texts[0] for e in train)
    with pytest.raises(DataError, match="only 31 texts"):
        sentence_disjoint_split(rows, 32, seed=1)
    with pytest.raises(DataError, match="single-text task"):
        sentence_disjoint_split([Example(texts=("a", "b"), label=0)], 1, seed=1)


def test_sentence_holdout_on_real_sst2(real_glue):
    """On the real SST-2: 1,000 held-out sentences (median length near the dev set's 19 words) and their phrases
    leave training; none of them occurs in a remaining training phrase."""
    import statistics

    from slimbert.training.settings import RunSettings
    from slimbert.training.task_data import TaskDataset

    data = TaskDataset(get_task("sst2"), RunSettings(data_dir=str(real_glue), holdout=1000, holdout_mode="sentences"))
    held = [e.texts[0] for e in data.heldout_examples()]
    train = data.train_examples(subsample=False)
    assert len(held) >= 1000 and statistics.median(len(t.split()) for t in held) >= 15
    joined = "\n".join(e.texts[0] for e in train)
    assert sum(1 for t in held[:200] if t in joined) == 0
    assert 50_000 < len(train) < 67_349 - 1000
