"""Read task splits from a GLUE-layout directory, the Hugging Face hub, or a user CSV/JSONL directory.

Source order for GLUE tasks: ``--data-dir`` / ``SLIMBERT_DATA`` (standard TSV layout, e.g.
``SST-2/train.tsv``), then the ``nyu-mll/glue`` dataset when the hub is reachable. Every problem
with a file (missing split, wrong columns, unknown label, empty file) raises a
:class:`~slimbert.errors.DataError` naming the file and saying how to fix it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from slimbert.data.tasks import TaskSpec
from slimbert.errors import DataError
from slimbert.hub import hub_reachable

DATA_ENV = "SLIMBERT_DATA"


@dataclass(frozen=True)
class Example:
    """One task example: one or two texts and a class id (or a float score for regression)."""

    texts: tuple[str, ...]
    label: int | float


@dataclass(frozen=True)
class RawTable:
    """A parsed file: records as dicts (column -> string) with their 1-based line numbers."""

    path: Path
    records: list[dict[str, str]]
    line_numbers: list[int]
    columns: tuple[str, ...]


def read_table(path: Path, headerless_columns: dict[str, int] | None = None) -> RawTable:
    """Parse a .tsv (GLUE style: tab-separated, no quoting), .csv or .jsonl file."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    suffix = path.suffix.lower()
    records: list[dict[str, str]] = []
    lines: list[int] = []
    if suffix == ".jsonl":
        columns: set[str] = set()
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{n}: each JSONL line must be an object")
                records.append({k: "" if v is None else str(v) for k, v in record.items()})
                lines.append(n)
                columns.update(record)
        return RawTable(path, records, lines, tuple(sorted(columns)))

    if suffix not in (".tsv", ".csv"):
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .tsv, .csv or .jsonl")
    with path.open(encoding="utf-8-sig", newline="") as f:
        if suffix == ".tsv":
            # GLUE TSVs contain unbalanced quotes: split on tabs only.
            rows = [line.rstrip("\r\n").split("\t") for line in f]
        else:
            rows = list(csv.reader(f))
    numbered = [(n, r) for n, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not numbered:
        raise DataError(f"{path} has no rows")
    if headerless_columns is not None:
        header = None
        width = max(headerless_columns.values()) + 1
        columns_t = tuple(headerless_columns)
    else:
        _, header = numbered.pop(0)
        header = [h.strip() for h in header]
        width = len(header)
        columns_t = tuple(header)
    for n, row in numbered:
        if len(row) < width:
            raise DataError(f"{path}:{n}: expected {width} columns, found {len(row)} (is the file tab-separated?)")
        if header is None:
            records.append({name: row[i] for name, i in headerless_columns.items()})
        else:
            records.append(dict(zip(header, row)))
        lines.append(n)
    if not records:
        raise DataError(f"{path} has a header but no data rows")
    return RawTable(path, records, lines, columns_t)


def _pick_column(columns, candidates: tuple[str, ...], what: str, where: str) -> str:
    """The first of ``candidates`` present in ``columns``."""
    for name in candidates:
        if name in columns:
            return name
    raise DataError(f"{where}: no {what} column; expected one of {list(candidates)}, found columns {list(columns)}")


def examples_from_table(task: TaskSpec, table: RawTable) -> list[Example]:
    """Turn parsed records into :class:`Example` objects, validating every label."""
    text_cols = [_pick_column(table.columns, c, "text", str(table.path)) for c in task.text_fields]
    label_col = _pick_column(table.columns, task.label_field, "label", str(table.path))
    examples = []
    for record, n in zip(table.records, table.line_numbers):
        raw = record[label_col].strip()
        examples.append(Example(tuple(record[c] for c in text_cols), parse_label(task, raw, f"{table.path}:{n}")))
    return examples


def parse_label(task: TaskSpec, raw: str, where: str) -> int | float:
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{where}: label {raw!r} is not a number (task {task.name} is a regression task)") from None
    if raw not in task.label_values:
        raise DataError(
            f"{where}: label {raw!r} is not in the label set of task {task.name}: {list(task.label_values)}"
        )
    return task.label_values.index(raw)


class TaskData:
    """The splits of one task, from the first source that has them; cached per split."""

    def __init__(self, task: TaskSpec, data_dir: str | os.PathLike | None = None):
        self._task = task
        env = os.environ.get(DATA_ENV)
        self.data_dir = Path(data_dir).expanduser() if data_dir else (Path(env).expanduser() if env else None)
        if self.data_dir is not None and not self.data_dir.is_dir():
            origin = "--data-dir" if data_dir else DATA_ENV
            raise DataError(f"{origin} points to {self.data_dir}, which is not a directory")
        self._cache: dict[str, list[Example]] = {}
        self._sources: dict[str, str] = {}

    # -- the task, with a custom task's label set read from its training file
    @property
    def task(self) -> TaskSpec:
        if self._task.label_values == ():
            train = self._read_local(self._task.local_dir, "train")
            label_col = _pick_column(train.columns, self._task.label_field, "label", str(train.path))
            values = tuple(sorted({r[label_col].strip() for r in train.records}))
            if len(values) < 2:
                raise DataError(f"{train.path}: the label column has fewer than two distinct values: {list(values)}")
            self._task = dataclasses.replace(self._task, label_values=values)
        return self._task

    def source(self, split: str) -> str:
        """Where a loaded split came from (a file path or 'hf:nyu-mll/glue/...')."""
        return self._sources.get(split, "(not loaded)")

    def has_split(self, split: str) -> bool:
        try:
            self.examples(split)
            return True
        except DataError:
            return False

    def examples(self, split: str) -> list[Example]:
        task = self.task
        if split not in task.splits:
            raise DataError(f"task {task.name} has no split {split!r}; splits: {', '.join(task.splits)}")
        if split not in self._cache:
            self._cache[split] = self._load(task, split)
        return self._cache[split]

    def eval_splits(self) -> list[str]:
        """Evaluation splits present; optional ones (MNLI mismatched) are skipped when absent."""
        present = []
        for split in self.task.eval_splits:
            if self.task.splits[split].optional and not self.has_split(split):
                continue
            present.append(split)
        return present

    # -- sources
    def _task_dir(self, task: TaskSpec) -> Path | None:
        if task.local_dir is not None:
            return task.local_dir
        if self.data_dir is None:
            return None
        if self.data_dir.name == task.glue_dir:  # pointed straight at the task folder
            return self.data_dir
        return self.data_dir / task.glue_dir

    def _find_file(self, directory: Path, split: str) -> Path | None:
        for name in self._task.splits[split].files:
            if (directory / name).is_file():
                return directory / name
        return None

    def _read_local(self, directory: Path, split: str) -> RawTable:
        path = self._find_file(directory, split)
        if path is None:
            names = " or ".join(self._task.splits[split].files)
            raise DataError(f"{self._task.name}: split {split!r} not found: no {names} in {directory}")
        return read_table(path, self._task.headerless_columns)

    def _load(self, task: TaskSpec, split: str) -> list[Example]:
        directory = self._task_dir(task)
        local_problem = None
        if directory is not None and directory.is_dir():
            path = self._find_file(directory, split)
            if path is not None:
                self._sources[split] = str(path)
                return examples_from_table(task, read_table(path, task.headerless_columns))
            local_problem = f"{directory} has no {' or '.join(task.splits[split].files)}"
        elif directory is not None:
            local_problem = f"{directory} does not exist"
        if task.hf_dataset is not None:
            if hub_reachable():
                return self._load_hf(task, split)
        if task.local_dir is not None:
            raise DataError(f"{task.name}: split {split!r} not found: {local_problem}")
        where = local_problem or f"no data directory is set ({DATA_ENV} / --data-dir)"
        raise DataError(
            f"{task.name}: split {split!r} not found: {where}, and the Hugging Face hub is not reachable. "
            f"Point --data-dir or {DATA_ENV} to a GLUE directory in the standard TSV layout "
            f"({task.glue_dir}/train.tsv, {task.glue_dir}/dev.tsv, ...), or go online to use HF datasets."
        )

    def _load_hf(self, task: TaskSpec, split: str) -> list[Example]:
        from datasets import load_dataset

        repo, config = task.hf_dataset
        hf_split = task.splits[split].hf_split
        try:
            ds = load_dataset(repo, config, split=hf_split)
        except Exception as exc:  # the datasets library raises many types; report them as data errors
            raise DataError(f"could not load {repo}/{config} split {hf_split} from the hub: {exc}") from None
        where = f"hf:{repo}/{config}/{hf_split}"
        self._sources[split] = where
        text_cols = [_pick_column(ds.column_names, c, "text", where) for c in task.text_fields]
        out = []
        for row in ds:
            label = row["label"]
            if not task.is_regression and not 0 <= label < task.num_labels:
                raise DataError(f"{where}: label {label} outside 0..{task.num_labels - 1} "
                                "(test splits have no labels)")
            out.append(Example(tuple(row[c] for c in text_cols), float(label) if task.is_regression else int(label)))
        return out
