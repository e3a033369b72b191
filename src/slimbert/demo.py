"""``make demo``: fine-tune (or reuse) a MiniLM-L6 SST-2 teacher, quantize it to int8, print the report card.

    python -m slimbert.demo [--runs DIR] [--full]

By default the teacher is a short one (4,000 training sentences, one epoch: a few minutes on two
cores, about 80% dev accuracy), so a first ``make demo`` finishes in about 15 minutes; ``--full``
trains the 2-epoch teacher behind BENCHMARKS.md (about an hour on two cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from slimbert.data.loaders import DATA_ENV
from slimbert.errors import SlimbertError

REPO = Path(__file__).resolve().parents[2]
TEACHER_ARGS = {"epochs": 2, "learning_rate": 1e-4, "eval_every": 500}  # the BENCHMARKS.md teacher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="where the teacher and compressed model are kept")
    parser.add_argument("--full", action="store_true", help="the full teacher of BENCHMARKS.md (2 epochs, ~1 hour)")
    parser.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    parser.add_argument("--data-dir", default=None, help=f"GLUE directory (default ${DATA_ENV})")
    args = parser.parse_args(argv)
    console, err = Console(), Console(stderr=True)
    try:
        run(Path(args.runs), not args.full, args.data_dir, err.print, console)
    except SlimbertError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    return 0


def run(runs: Path, fast: bool, data_dir: str | None, log, console: Console) -> None:
    from dataclasses import replace

    from slimbert.api import compress
    from slimbert.data.loaders import TaskData
    from slimbert.data.tasks import get_task
    from slimbert.finetune import finetune
    from slimbert.training.config import TrainConfig
    from slimbert.training.settings import RunSettings

    data = TaskData(get_task("sst2"), data_dir)
    try:
        data.examples("train"), data.examples("validation")
    except SlimbertError as exc:
        raise SlimbertError(
            f"the demo needs SST-2: {exc}\nSet {DATA_ENV} (or pass --data-dir / `make demo SLIMBERT_DATA=...`) to a "
            "GLUE directory with SST-2/train.tsv and SST-2/dev.tsv."
        ) from None
    if fast:
        settings = RunSettings(data_dir=data_dir, max_train_samples=4000, epochs=1, learning_rate=1e-4)
        teacher_dir = runs / "teacher-minilm-sst2-fast"
        cfg = TrainConfig(eval_every=1000)
    else:
        settings = RunSettings(data_dir=data_dir, epochs=TEACHER_ARGS["epochs"], learning_rate=TEACHER_ARGS["learning_rate"])
        teacher_dir = runs / "teacher-minilm-sst2"
        cfg = replace(TrainConfig(), eval_every=TEACHER_ARGS["eval_every"])
    what = ("a short teacher: 4,000 sentences, 1 epoch (make demo DEMO_ARGS=--full trains the full one, ~1 hour)"
            if fast else "the full teacher of BENCHMARKS.md: 2 epochs over SST-2")
    log(f"[bold]1/2[/] teacher: fine-tune all-MiniLM-L6-v2 on SST-2 -> {teacher_dir} ({what})")
    summary = finetune("minilm-l6", "sst2", teacher_dir, settings, train_config=cfg, log=log)
    log(f"teacher SST-2 dev accuracy {summary.metrics['accuracy'] * 100:.2f}% after {summary.steps} steps")
    out = runs / "demo-dynamic-int8"
    log(f"[bold]2/2[/] compress with recipes/dynamic-int8.yaml -> {out}")
    compress(teacher_dir, "sst2", REPO / "recipes" / "dynamic-int8.yaml", out,
             settings=RunSettings(data_dir=data_dir), overwrite=True, log=log)
    console.print(Markdown((out / "report.md").read_text()))
    console.print(f"\nCompressed model, ONNX export and report: {out}/ (report.json, report.md, model.onnx)")


if __name__ == "__main__":
    sys.exit(main())
