"""Task registry: the nine GLUE tasks and user CSV/JSONL tasks.

A :class:`TaskSpec` says where a task's text and labels live in each file format, what its label
set is (``None`` for regression), which metrics it reports (the first is the main one) and which
evaluation splits it has. Label orders follow the Hugging Face ``glue`` dataset so that local TSV
files and the hub give the same class ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slimbert.errors import DataError


@dataclass(frozen=True)
class SplitFiles:
    """Candidate file names of one split, the HF datasets split name, and whether it may be absent."""

    files: tuple[str, ...]
    hf_split: str
    optional: bool = False


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # One entry per text input; each lists the accepted column names (TSV header / JSONL keys).
    text_fields: tuple[tuple[str, ...], ...]
    label_field: tuple[str, ...]
    # Raw label strings as they appear in files; class id = position. None means regression.
    label_values: tuple[str, ...] | None
    metrics: tuple[str, ...]
    splits: dict[str, SplitFiles]
    eval_splits: tuple[str, ...] = ("validation",)
    glue_dir: str | None = None
    hf_dataset: tuple[str, str] | None = None
    # Files without a header (CoLA): column index per field name.
    headerless_columns: dict[str, int] | None = None
    label_names: tuple[str, ...] | None = None
    local_dir: Path | None = field(default=None, compare=False)

    @property
    def is_regression(self) -> bool:
        return self.label_values is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_values is None else len(self.label_values)

    @property
    def main_metric(self) -> str:
        prefix = self.eval_prefix(self.eval_splits[0])
        return prefix + self.metrics[0]

    def eval_prefix(self, split: str) -> str:
        """Metric-name prefix for an eval split: '' for single-split tasks, 'matched_' etc. for MNLI."""
        if len(self.eval_splits) == 1:
            return ""
        return split.removeprefix("validation_") + "_"

    def head_config(self) -> dict:
        """Keyword arguments for a new classification head of this task."""
        if self.is_regression:
            return {"num_labels": 1, "problem_type": "regression"}
        names = self.label_names or self.label_values
        return {
            "num_labels": self.num_labels,
            "problem_type": "single_label_classification",
            "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)},
        }


def _glue(name, glue_dir, text_fields, label_field, label_values, metrics, hf_name, *,
          label_names=None, eval_splits=("validation",), splits=None, headerless_columns=None) -> TaskSpec:
    splits = splits or {
        "train": SplitFiles(("train.tsv",), "train"),
        "validation": SplitFiles(("dev.tsv",), "validation"),
    }
    return TaskSpec(
        name=name,
        text_fields=text_fields,
        label_field=label_field,
        label_values=label_values,
        label_names=label_names,
        metrics=metrics,
        splits=splits,
        eval_splits=eval_splits,
        glue_dir=glue_dir,
        hf_dataset=("nyu-mll/glue", hf_name),
        headerless_columns=headerless_columns,
    )


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _glue("cola", "CoLA", (("sentence",),), ("label",), _BINARY, ("mcc", "accuracy"), "cola",
              label_names=("unacceptable", "acceptable"), headerless_columns={"label": 1, "sentence": 3}),
        _glue("sst2", "SST-2", (("sentence",),), ("label",), _BINARY, ("accuracy",), "sst2",
              label_names=("negative", "positive")),
        _glue("mrpc", "MRPC", (("#1 String", "sentence1"), ("#2 String", "sentence2")), ("Quality", "label"),
              _BINARY, ("f1", "accuracy"), "mrpc", label_names=("not_equivalent", "equivalent")),
        _glue("stsb", "STS-B", (("sentence1",), ("sentence2",)), ("score", "label"), None,
              ("pearson", "spearman"), "stsb"),
        _glue("qqp", "QQP", (("question1",), ("question2",)), ("is_duplicate", "label"), _BINARY,
              ("accuracy", "f1"), "qqp", label_names=("not_duplicate", "duplicate")),
        _glue("mnli", "MNLI", (("sentence1", "premise"), ("sentence2", "hypothesis")), ("gold_label", "label"),
              ("entailment", "neutral", "contradiction"), ("accuracy",), "mnli",
              eval_splits=("validation_matched", "validation_mismatched"),
              splits={
                  "train": SplitFiles(("train.tsv",), "train"),
                  "validation_matched": SplitFiles(("dev_matched.tsv", "dev_matched.jsonl"), "validation_matched"),
                  "validation_mismatched": SplitFiles(
                      ("dev_mismatched.tsv", "dev_mismatched.jsonl"), "validation_mismatched", optional=True),
              }),
        _glue("qnli", "QNLI", (("question",), ("sentence",)), ("label",), _NLI2, ("accuracy",), "qnli"),
        _glue("rte", "RTE", (("sentence1",), ("sentence2",)), ("label",), _NLI2, ("accuracy",), "rte"),
        _glue("wnli", "WNLI", (("sentence1",), ("sentence2",)), ("label",), _BINARY, ("accuracy",), "wnli"),
    ]
}

# Accepted spellings: "SST-2", "sst-2", "sst2", "STS-B", ...
_ALIASES = {t.glue_dir.lower().replace("-", ""): t.name for t in GLUE_TASKS.values()}


def custom_task(spec: str, text_cols: list[str] | tuple[str, ...] | None, label_col: str | None,
                regression: bool = False) -> TaskSpec:
    """A user task from ``csv:DIR``: DIR holds train and dev files (.csv, .tsv or .jsonl).

    The label set is read from the training file (sorted); ``regression=True`` treats labels as
    numbers and reports Pearson/Spearman.
    """
    directory = Path(spec.split(":", 1)[1]).expanduser()
    if not directory.is_dir():
        raise DataError(f"custom task directory not found: {directory} (use --task csv:path/to/dir with train/dev files)")
    if not text_cols or not label_col:
        raise DataError(
            "a csv: task needs --text-col (one or two, e.g. --text-col sentence1 --text-col sentence2) "
            "and --label-col naming the columns of its files"
        )
    if len(text_cols) > 2:
        raise DataError(f"at most two --text-col columns are supported (sentence or sentence pair), got {list(text_cols)}")
    exts = (".csv", ".tsv", ".jsonl")
    return TaskSpec(
        name=f"csv:{directory}",
        text_fields=tuple((c,) for c in text_cols),
        label_field=(label_col,),
        label_values=None if regression else (),  # () = read the label set from the training file
        metrics=("pearson", "spearman") if regression else ("accuracy", "macro_f1"),
        splits={
            "train": SplitFiles(tuple("train" + e for e in exts), "train"),
            "validation": SplitFiles(tuple(n + e for n in ("dev", "validation") for e in exts), "validation"),
        },
        local_dir=directory,
    )


def get_task(name: str, *, text_cols=None, label_col=None, regression: bool = False) -> TaskSpec:
    """Look up a GLUE task (``sst2``, ``SST-2``, ...) or build a ``csv:DIR`` task."""
    if name.startswith("csv:"):
        return custom_task(name, text_cols, label_col, regression)
    key = name.lower().replace("-", "").replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise DataError(
            f"unknown task {name!r}; GLUE tasks: {', '.join(GLUE_TASKS)}; or csv:path/to/dir for your own data"
        )
    return GLUE_TASKS[key]
