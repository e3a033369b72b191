"""``make demo``: fine-tune (or reuse) a MiniLM-L6 SST-2 teacher, compress it two ways, put it beside the runtimes'
own one-line quantizers, and write the HTML report of it all.

    python -m slimbert.demo [--runs DIR] [--full]

1. the teacher (reused when already trained);
2. ``recipes/dynamic-int8.yaml`` (int8: what one call of a peer's tool gives);
3. ``recipes/fast-cpu.yaml`` -- by default a *reduced* run of it, labelled as such (1,500 training sentences per
   training stage), so that the demo stays short; ``--full`` runs it on all of SST-2;
4. ``slimbert bench peers`` on the teacher with both artifacts: PyTorch fp32, ONNX Runtime's ``quantize_dynamic``,
   OpenVINO + NNCF int8, ... side by side;
5. the HTML report (Table 1 of the demo's runs, Pareto plots, findings, the peers): its path is printed last.

By default the teacher is a short one (4,000 training sentences, one epoch: a few minutes on two cores, about 80%
dev accuracy), so a first ``make demo`` finishes in 9-15 minutes; ``--full`` trains the 2-epoch teacher behind
BENCHMARKS.md and the full fast-cpu recipe (hours on two cores; not timed: its run on 32,000 of SST-2's
67,349 training texts took 42 minutes, BENCHMARKS.md section 7).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

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
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    return 0


def run(runs: Path, fast: bool, data_dir: str | None, log, console: Console) -> None:
    from dataclasses import replace

    from slimbert.api import compress
    from slimbert.bench.html_report import render_bench_report, write_report
    from slimbert.bench.peers import peers_tables, run_peers
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
    log(f"[bold]1/5[/] teacher: fine-tune all-MiniLM-L6-v2 on SST-2 -> {teacher_dir} ({what})")
    summary = finetune("minilm-l6", "sst2", teacher_dir, settings, train_config=cfg, log=log)
    log(f"teacher SST-2 dev accuracy {summary.metrics['accuracy'] * 100:.2f}% after {summary.steps} steps")
    started = time.perf_counter()
    reduced = {"max_train_samples": 1500} if fast else {}
    plans = [("demo-dynamic-int8", "dynamic-int8", {}, "dynamic int8"),
             ("demo-fast-cpu-reduced" if fast else "demo-fast-cpu", "fast-cpu", reduced,
              "fast-cpu, REDUCED demo run (1,500 training sentences per stage; BENCHMARKS.md has the full one)"
              if fast else "fast-cpu (full)")]
    records = {}
    for i, (name, recipe, extra, label) in enumerate(plans, start=2):
        out = runs / name
        log(f"[bold]{i}/5[/] compress with recipes/{recipe}.yaml -> {out} ({label})")
        t0 = time.perf_counter()
        result = compress(teacher_dir, "sst2", REPO / "recipes" / f"{recipe}.yaml", out,
                          settings=RunSettings(data_dir=data_dir, **extra), overwrite=True, log=log,
                          latency_budget_s=5.0 if fast else 20.0)
        records[name] = _record(name, teacher_dir, recipe, out, extra, label, time.perf_counter() - t0, result.report)
        records[name].save(_results_dir(runs) / f"{name}.json")
    console.print(Markdown((runs / plans[0][0] / "report.md").read_text()))
    log("[bold]4/5[/] the runtimes' own tools on the same teacher, side by side (slimbert bench peers)")
    peers = run_peers(str(teacher_dir), "sst2", [runs / name for name, *_ in plans], data_dir=data_dir,
                      budget_s=3.0 if fast else 10.0, natural_examples=64 if fast else 256, log=log)
    peers["command"] = "python -m slimbert.demo (slimbert bench peers)"
    log("[bold]5/5[/] the HTML report")
    preface = (f"<p>The demo's own runs ({'a short teacher and a REDUCED fast-cpu run' if fast else 'full runs'}), "
               f"{(time.perf_counter() - started) / 60:.1f} minutes of compression and measurement on this machine. "
               "BENCHMARKS.md and benchmarks/results hold the full experiments.</p>")
    html_path = write_report(runs / "demo-report.html", render_bench_report(records, peers=peers, preface=preface,
                                                                            title="slimbert demo: SST-2 on MiniLM-L6"))
    console.print(peers_tables(peers), markup=False)  # data: '[torchao]' is not a style tag
    console.print(f"\nArtifacts: {', '.join(str(runs / name) for name, *_ in plans)} (each with report.html)")
    console.print(f"HTML report: {html_path.resolve()}")


def _results_dir(runs: Path) -> Path:
    path = runs / "demo-results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record(name: str, teacher: Path, recipe: str, out: Path, settings: dict, label: str, seconds: float, card):
    """The demo's run as a benchmark record, so the report reads it like any result."""
    from slimbert.bench.experiments import Experiment
    from slimbert.bench.records import BenchRecord

    experiment = Experiment(name=name, kind="compress", task="sst2", model=str(teacher),
                            recipe=str(REPO / "recipes" / f"{recipe}.yaml"), settings=settings, output=str(out),
                            description=label)
    return BenchRecord(experiment=experiment, command="make demo", seconds=round(seconds, 1), result=card,
                       environment=card.environment)


if __name__ == "__main__":
    sys.exit(main())
