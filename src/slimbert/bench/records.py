"""One benchmark record (``benchmarks/results/<experiment>.json``), typed.

Fields: the ``experiment`` as run (:class:`~slimbert.bench.experiments.Experiment`), the ``command``
that produced the record, its wall ``seconds``, the ``result`` (a
:class:`~slimbert.report.card.ReportCard` for compress experiments, a
:class:`~slimbert.report.training_summary.TrainingSummary` for fine-tuning), the ``environment``,
and ``latency_command`` when ``bench retime`` measured the latency again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slimbert.bench.experiments import Experiment
from slimbert.config import build_dataclass, to_plain
from slimbert.errors import SlimbertError
from slimbert.report.card import Environment, ReportCard
from slimbert.report.training_summary import TrainingSummary


@dataclass(frozen=True)
class BenchRecord:
    experiment: Experiment
    command: str
    seconds: float
    result: ReportCard | TrainingSummary
    environment: Environment
    latency_command: str | None = None

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def card(self) -> ReportCard | None:
        """The report card of a compress experiment (None for fine-tuning)."""
        return self.result if isinstance(self.result, ReportCard) else None

    @property
    def summary(self) -> TrainingSummary | None:
        """The training summary of a fine-tuning experiment (None for compress)."""
        return self.result if isinstance(self.result, TrainingSummary) else None

    def with_card(self, card: ReportCard, latency_command: str) -> "BenchRecord":
        return replace(self, result=card, environment=card.environment, latency_command=latency_command)

    def to_dict(self) -> dict[str, Any]:
        out = {"experiment": to_plain(self.experiment), "command": self.command, "seconds": self.seconds,
               "result": self.result.to_dict(), "environment": to_plain(self.environment)}
        if self.latency_command is not None:
            out["latency_command"] = self.latency_command
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "bench record") -> "BenchRecord":
        experiment = build_dataclass(Experiment, data["experiment"], f"{where}: experiment")
        result_cls = ReportCard if experiment.kind == "compress" else TrainingSummary
        return cls(experiment=experiment, command=data["command"], seconds=data["seconds"],
                   result=result_cls.from_dict(data["result"], f"{where}: result"),
                   environment=build_dataclass(Environment, data["environment"], f"{where}: environment"),
                   latency_command=data.get("latency_command"))

    def save(self, path: Path) -> None:
        """Write atomically: a record on disk is always complete."""
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)


def is_bench_record(data: Any) -> bool:
    return isinstance(data, dict) and "experiment" in data and "result" in data


def load_record(path: Path) -> BenchRecord:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SlimbertError(f"{path}: not a readable benchmark record ({exc})") from None
    if not is_bench_record(data):
        raise SlimbertError(f"{path}: not a benchmark record (no experiment/result); probe outputs belong in "
                            "benchmarks/probes/results/")
    return BenchRecord.from_dict(data, str(path))


def records_in(directory: Path) -> dict[str, BenchRecord]:
    """Every benchmark record in ``directory`` by file stem (other or unreadable JSON files are skipped)."""
    records = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if is_bench_record(data):
            records[path.stem] = load_record(path)
    return records
