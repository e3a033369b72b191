"""The ``slimbert`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from slimbert.errors import SlimbertError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make BERT-family models small and fast, and measure what each method buys.")


def _console(stderr: bool = False, markup: bool = True) -> Console:
    """A terminal gets rich output; a pipe or file gets plain lines, never wrapped or truncated."""
    probe = Console(stderr=stderr, markup=markup)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=100_000, soft_wrap=True, no_color=True, highlight=False, markup=markup)


console = _console()
# stderr carries data (logs, notes, plans, paths): printed as written, since rich would read '[torchao]' or '[bert]'
# in it as a style tag and drop it; the styled lines below ask for markup.
err = _console(stderr=True, markup=False)

# -- options shared by finetune, eval and compress
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Local HF directory, hub id, slimbert artifact, or 'minilm-l6'.")]
TaskOpt = Annotated[str, typer.Option("--task", "-t", help="GLUE task (sst2, mrpc, ...) or csv:DIR for your own data.")]
DataDirOpt = Annotated[Optional[str], typer.Option("--data-dir", help="GLUE directory (SST-2/train.tsv, ...); default $SLIMBERT_DATA.")]
TrainSamplesOpt = Annotated[Optional[int], typer.Option("--max-train-samples", help="Train on a random subset of N examples.")]
EvalSamplesOpt = Annotated[Optional[int], typer.Option("--max-eval-samples", help="Evaluate on the first N examples.")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="Training epochs (may be fractional).")]
MaxStepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps; overrides --epochs.")]
SeedOpt = Annotated[int, typer.Option("--seed")]
SeqLenOpt = Annotated[Optional[int], typer.Option(
    "--max-seq-len", help="Truncate inputs to this many tokens (default 128, or the model's positions if fewer).")]
TextColOpt = Annotated[Optional[list[str]], typer.Option("--text-col", help="csv: tasks: text column (repeat for pairs).")]
LabelColOpt = Annotated[Optional[str], typer.Option("--label-col", help="csv: tasks: label column.")]
RegressionOpt = Annotated[bool, typer.Option("--regression", help="csv: tasks: numeric labels (Pearson/Spearman).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
HoldoutOpt = Annotated[Optional[int], typer.Option(
    "--holdout", help="Set aside N training examples (seeded), never trained on: a split to choose models on.")]
HoldoutModeOpt = Annotated[str, typer.Option(
    "--holdout-mode", help="'random' training examples, or whole 'sentences' with their phrases dropped from training "
    "(SST-2: its random held-out phrases are mostly pieces of training phrases).")]
EvalSplitOpt = Annotated[str, typer.Option("--eval-split", help="Evaluate on 'dev' or on the 'heldout' examples.")]


def _settings(data_dir, max_train_samples, max_eval_samples, epochs, max_steps, seed, max_seq_len,
              batch_size=None, learning_rate=None, holdout=None, eval_split="dev", holdout_mode="random"):
    from slimbert.training.settings import RunSettings

    if eval_split not in ("dev", "heldout"):
        raise SlimbertError(f"--eval-split must be dev or heldout, got {eval_split!r}")
    settings = RunSettings(data_dir=data_dir, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                           epochs=epochs, max_steps=max_steps, seed=seed, max_seq_len=max_seq_len,
                           batch_size=batch_size, learning_rate=learning_rate, holdout=holdout,
                           holdout_mode=holdout_mode, eval_split=eval_split)
    settings.validate()
    return settings


def _main_process() -> bool:
    from slimbert.training.distributed import is_main_process

    return is_main_process()


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v * 100:.2f}")
    return table


@app.command()
def finetune(
    model: ModelOpt, task: TaskOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (reused when already finished).")],
    data_dir: DataDirOpt = None, max_train_samples: TrainSamplesOpt = None, max_eval_samples: EvalSamplesOpt = None,
    epochs: EpochsOpt = None, max_steps: MaxStepsOpt = None, seed: SeedOpt = 42, max_seq_len: SeqLenOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default 5e-5).")] = None,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Evaluate every N steps (default: each epoch).")] = None,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")] = 1,
    holdout: HoldoutOpt = None, holdout_mode: HoldoutModeOpt = "random",
    text_col: TextColOpt = None, label_col: LabelColOpt = None, regression: RegressionOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Train again even if OUT is finished.")] = False,
    json_out: JsonOpt = False,
):
    """Fine-tune a model on a task (resumes after an interruption; reuses a finished OUT)."""
    from dataclasses import replace

    from slimbert.finetune import finetune as run
    from slimbert.training.config import TrainConfig

    settings = _settings(data_dir, max_train_samples, max_eval_samples, epochs, max_steps, seed, max_seq_len,
                         batch_size, lr, holdout=holdout, holdout_mode=holdout_mode)
    cfg = replace(TrainConfig(), eval_every=eval_every, grad_accum_steps=grad_accum)
    summary = run(model, task, out, settings, train_config=cfg, text_cols=text_col, label_col=label_col,
                  regression=regression, overwrite=overwrite, log=err.print)
    if not _main_process():
        return  # under `accelerate launch`, the main process reports
    if json_out:
        console.print_json(json.dumps({**summary.to_dict(), "out": str(out)}))
        return
    console.print(_metrics_table(f"{summary.task} dev ({summary.steps} steps, "
                                 f"{summary.train_seconds:.0f} s training)", summary.metrics))
    console.print(f"model written to {out}")


RuntimeOpt = Annotated[Optional[str], typer.Option(
    "--runtime", help="pytorch, onnxruntime or openvino (default: PyTorch for eval, the artifact's serving runtime "
                      "for predict).")]


@app.command("eval")
def evaluate_cmd(
    model: ModelOpt, task: TaskOpt, data_dir: DataDirOpt = None, max_eval_samples: EvalSamplesOpt = None,
    max_seq_len: SeqLenOpt = None, text_col: TextColOpt = None, label_col: LabelColOpt = None,
    regression: RegressionOpt = False, json_out: JsonOpt = False, runtime: RuntimeOpt = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Same as --runtime onnxruntime.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Evaluation batch size.")] = 128,
    holdout: HoldoutOpt = None, holdout_mode: HoldoutModeOpt = "random", eval_split: EvalSplitOpt = "dev",
    # Accepted so that one set of flags works for finetune, eval and compress; eval does not train.
    max_train_samples: Annotated[Optional[int], typer.Option("--max-train-samples", hidden=True)] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", hidden=True)] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", hidden=True)] = None,
    seed: Annotated[int, typer.Option("--seed", hidden=True)] = 42,
):
    """Print a model's task metrics on the dev split(s), on any runtime its artifact has."""
    from slimbert.data.tasks import get_task
    from slimbert.export.runtimes import open_session
    from slimbert.models.loading import load_model, resolve_model_source
    from slimbert.models.shape import shape_of
    from slimbert.training.task_data import TaskDataset

    if onnx and runtime not in (None, "onnxruntime"):
        raise SlimbertError(f"--onnx means --runtime onnxruntime; it conflicts with --runtime {runtime}")
    runtime = "onnxruntime" if onnx else (runtime or "pytorch")
    if batch_size < 1:
        raise SlimbertError(f"--batch-size must be >= 1, got {batch_size}")
    settings = _settings(data_dir, None, max_eval_samples, None, None, 42, max_seq_len, holdout=holdout,
                         holdout_mode=holdout_mode, eval_split=eval_split)
    data = TaskDataset(get_task(task, text_cols=text_col, label_col=label_col, regression=regression), settings)
    bundle = load_model(model, data.task)
    data.settings, note = settings.for_model(shape_of(bundle.model).max_positions, model)
    if note:
        err.print(note)
    session = open_session(bundle, Path(resolve_model_source(model)), runtime)
    pad = bundle.tokenizer.pad_token_id or 0
    metrics = data.evaluation(lambda ds: session.predict(ds, batch_size, pad), bundle.tokenizer).metrics
    examples = {s: len(d) for s, d in data.eval_sets(bundle.tokenizer).items()}
    if json_out:
        console.print_json(json.dumps({"task": data.task.name, "model": model, "runtime": runtime,
                                       "batch_size": batch_size, "examples": examples, "metrics": metrics}))
    else:
        console.print(_metrics_table(f"{data.task.name}: {model} on {runtime} "
                                     f"({', '.join(f'{k} {v}' for k, v in examples.items())} examples)", metrics))


@app.command()
def predict(
    model: ModelOpt,
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify (default: one per line on stdin, or "
                                                              "JSON lines {\"text\": ...} / {\"texts\": [a, b]}).")] = None,
    runtime: RuntimeOpt = None, json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Threads for the runtime.")] = None,
):
    """Classify texts with a (compressed) model: labels and scores."""
    from slimbert.serving import pipeline

    items = list(texts) if texts else [_read_text(line, n) for n, line in enumerate(sys.stdin, 1) if line.strip()]
    clf = pipeline(model, runtime=runtime, threads=threads)
    for text, prediction in zip(items, clf(items)):
        if json_out:
            print(json.dumps({"text": text, **prediction.to_dict(), "runtime": clf.runtime}))
        else:
            label = prediction.label if prediction.label is not None else "score"
            shown = text if isinstance(text, str) else " ||| ".join(text)
            print(f"{label}\t{prediction.score:.4f}\t{shown}")


def _read_text(line: str, number: int):
    """A plain line is one text; a JSON line gives "text" or a "texts" pair."""
    line = line.rstrip("\n")
    if not line.lstrip().startswith("{"):
        return line
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SlimbertError(f"stdin line {number}: looks like JSON but is not valid ({exc.msg})") from None
    if isinstance(record.get("text"), str):
        return record["text"]
    pair = record.get("texts")
    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair):
        return tuple(pair)
    raise SlimbertError(f'stdin line {number}: a JSON line needs "text": "..." or "texts": ["...", "..."]')


@app.command()
def compress(
    model: ModelOpt, task: TaskOpt,
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Recipe YAML (see recipes/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory, written atomically.")],
    data_dir: DataDirOpt = None, max_train_samples: TrainSamplesOpt = None, max_eval_samples: EvalSamplesOpt = None,
    epochs: EpochsOpt = None, max_steps: MaxStepsOpt = None, seed: SeedOpt = 42, max_seq_len: SeqLenOpt = None,
    text_col: TextColOpt = None, label_col: LabelColOpt = None, regression: RegressionOpt = False,
    threads: Annotated[int, typer.Option("--threads", help="Threads for latency measurement.")] = 2,
    no_latency: Annotated[bool, typer.Option("--no-latency", help="Skip latency measurement.")] = False,
    latency_budget: Annotated[float, typer.Option("--latency-budget", help="Seconds of timing per runtime and shape.")] = 20.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    start_from: Annotated[Optional[str], typer.Option(
        "--start-from", help="Start the recipe from this model (e.g. minilm-l6, the pretrained checkpoint) instead of "
                             "MODEL, which stays the teacher and the baseline (movement pruning's setting).")] = None,
    holdout: HoldoutOpt = None, holdout_mode: HoldoutModeOpt = "random", eval_split: EvalSplitOpt = "dev",
    json_out: JsonOpt = False,
):
    """Run a recipe; write the compressed model, its ONNX export and the report card to OUT."""
    from slimbert.api import compress as run

    settings = _settings(data_dir, max_train_samples, max_eval_samples, epochs, max_steps, seed, max_seq_len,
                         holdout=holdout, holdout_mode=holdout_mode, eval_split=eval_split)
    result = run(model, task, recipe, out, settings=settings, text_cols=text_col, label_col=label_col,
                 regression=regression, latency=not no_latency, threads=threads, latency_budget_s=latency_budget,
                 overwrite=overwrite, start_from=start_from, log=err.print)
    if not _main_process():
        return
    if json_out:
        console.print_json(json.dumps(result.report.to_dict()))
    else:
        _print_markdown((out / "report.md").read_text())
        console.print(f"compressed model, ONNX export and report written to {out}")


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML to check.")],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Also check the steps against this model's shape (read from its config only): layer "
                              "and head counts, block sizes, step order after quantization.")] = None,
    json_out: JsonOpt = False,
):
    """Check a recipe without running it (and against a model's shape with --model)."""
    from dataclasses import asdict

    from slimbert.recipe import Recipe

    r = Recipe.from_file(recipe)
    shape = final = None
    if model is not None:
        from slimbert.models.shape import shape_of_spec

        shape = shape_of_spec(model)
        final = r.check(shape)
    if json_out:
        console.print_json(json.dumps({"valid": True, "recipe": str(recipe), "steps": [s.method for s in r.steps],
                                       "model": model, "shape": asdict(shape) if shape else None,
                                       "final_shape": asdict(final) if final else None}))
        return
    against = ""
    if shape is not None:
        against = (f", and it applies to {model}: {shape.layers} layers, {shape.total_heads} heads, "
                   f"{shape.total_neurons} FFN neurons -> {final.layers} layers, {final.total_heads} heads, "
                   f"{final.total_neurons} FFN neurons")
    console.print(f"[green]ok[/]: {recipe} is a valid recipe with {len(r.steps)} step(s): "
                  + ", ".join(s.method for s in r.steps) + against)


@app.command()
def methods(json_out: JsonOpt = False):
    """List the registered compression methods and their config fields."""
    from slimbert.methods import available_methods

    found = available_methods()
    if json_out:
        console.print_json(json.dumps([
            {"name": name, "family": m.family, "fields": m.config_cls.field_names(), "summary": m.summary,
             "accepts_distill": m.accepts_distill, "quantizes": m.quantizes} for name, m in found.items()]))
        return
    table = Table(title="slimbert methods")
    for col in ("method", "family", "fields", "summary"):
        table.add_column(col, overflow="fold")
    for name, m in found.items():
        table.add_row(name, m.family, ", ".join(m.config_cls.field_names()), m.summary)
    console.print(table)


def _print_markdown(text: str) -> None:
    """Rendered on a terminal; the Markdown itself when piped (it is already plain text)."""
    if console.is_terminal:
        from rich.markdown import Markdown

        console.print(Markdown(text))
    else:
        console.print(text, markup=False)


@app.command()
def profile(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model to profile (spec as elsewhere).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A config.json to profile with random weights.")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len")] = 128,
    batch: Annotated[int, typer.Option("--batch")] = 1,
    runs: Annotated[int, typer.Option("--runs")] = 10,
    threads: Annotated[int, typer.Option("--threads")] = 2,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for profile.md, profile.json, profile.png.")] = None,
    json_out: JsonOpt = False,
):
    """Break parameters, memory, FLOPs and time down by component (survey section 2)."""
    from slimbert.measure.profile import plot_profile, profile_model, render_profile_markdown

    bundle_model, input_names = _profile_target(model, config)
    result = profile_model(bundle_model, seq_len=seq_len, batch=batch, runs=runs, threads=threads, input_names=input_names)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "profile.json").write_text(json.dumps(result, indent=2))
        (out / "profile.md").write_text(render_profile_markdown(result))
        plot_profile(result, out / "profile.png")
        err.print(f"wrote {out}/profile.md, profile.json and profile.png")
    if json_out:
        console.print_json(json.dumps(result))
    else:
        _print_markdown(render_profile_markdown(result))


bench_app = typer.Typer(no_args_is_help=True, help="Run benchmark experiments and render their tables.")
app.add_typer(bench_app, name="bench")


@bench_app.command("run")
def bench_run(
    experiments: Annotated[list[Path], typer.Argument(help="benchmarks/experiments/*.yaml files.")],
    no_latency: Annotated[bool, typer.Option("--no-latency", help="Skip timing (re-time later with `bench retime`).")] = False,
    json_out: JsonOpt = False,
):
    """Run experiments; each writes benchmarks/results/<name>.json."""
    from slimbert.bench.runner import run_experiment

    records = [run_experiment(path, log=err.print, latency=not no_latency) for path in experiments]
    if json_out:
        console.print_json(json.dumps([r.to_dict() for r in records]))


@bench_app.command("retime")
def bench_retime(
    experiments: Annotated[list[Path], typer.Argument(help="Finished compress experiments to re-time.")],
    json_out: JsonOpt = False,
):
    """Measure latency again from saved artifacts (run on a quiet machine)."""
    from slimbert.bench.runner import retime_experiment

    records = [retime_experiment(path, log=err.print) for path in experiments]
    if json_out:
        console.print_json(json.dumps([r.to_dict() for r in records]))


@bench_app.command("table")
def bench_table(
    names: Annotated[Optional[list[str]], typer.Argument(help="Result names (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the records as JSON instead of tables.")] = False,
):
    """Print Markdown tables of benchmark results."""
    from slimbert.bench.runner import load_results
    from slimbert.bench.tables import finetune_table, latency_table, quality_size_table

    records = load_results()
    if names:
        missing = [n for n in names if n not in records]
        if missing:
            raise SlimbertError(f"no results for {missing}; run `slimbert bench run benchmarks/experiments/<name>.yaml`")
        records = {n: records[n] for n in names}
    if json_out:
        console.print_json(json.dumps({name: r.to_dict() for name, r in records.items()}))
        return
    for table in (finetune_table(records), quality_size_table(records), latency_table(records)):
        if table.count("\n") > 1:
            print(table)
            print()


@bench_app.command("plot")
def bench_plot(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the PNGs.")] = Path("benchmarks/plots"),
    json_out: JsonOpt = False,
):
    """Render the curves (accuracy, size, latency vs x) of experiments with a `plot:` block."""
    from slimbert.bench.plots import plot_results
    from slimbert.bench.runner import load_results

    paths = plot_results(load_results(), out)
    for path in paths:
        err.print(f"wrote {path}")
    if json_out:
        console.print_json(json.dumps([str(p) for p in paths]))


@bench_app.command("peers")
def bench_peers(
    model: ModelOpt, task: TaskOpt,
    artifact: Annotated[Optional[list[Path]], typer.Option("--artifact", "-a", help="slimbert artifacts to compare (repeat).")] = None,
    data_dir: DataDirOpt = None,
    threads: Annotated[int, typer.Option("--threads")] = 2,
    budget: Annotated[float, typer.Option("--budget", help="Seconds of timing per runtime and shape.")] = 10.0,
    natural_examples: Annotated[int, typer.Option("--natural-examples", help="Dev sentences timed at their own lengths.")] = 256,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the record (JSON) here, and a Pareto plot beside it.")] = None,
    json_out: JsonOpt = False,
):
    """slimbert artifacts vs the runtimes' own tools (ORT quantize_dynamic, OpenVINO + NNCF, ...), side by side."""
    from slimbert.bench.peers import peers_tables, plot_peers, run_peers, save_record

    for path in artifact or []:
        if not (path / "slimbert.json").is_file():
            raise SlimbertError(f"--artifact {path} is not a slimbert artifact (no slimbert.json)")
    record = run_peers(model, task, list(artifact or []), data_dir=data_dir, threads=threads, budget_s=budget,
                       natural_examples=natural_examples, log=err.print)
    _emit_record(record, "peers", out, json_out, save_record, plot_peers, peers_tables)


def _emit_record(record: dict, subcommand: str, out: Path | None, json_out: bool, save, plot, table) -> None:
    """A bench record: its command noted, saved as JSON with its plot beside it, printed as JSON or a table."""
    record["command"] = f"slimbert bench {subcommand} " + " ".join(sys.argv[3:])
    if out is not None:
        save(record, out)
        plot(record, out.with_suffix(".png"))
        err.print(f"wrote {out} and {out.with_suffix('.png')}")
    if json_out:
        console.print_json(json.dumps(record))
    else:
        print(table(record))


@app.command("plan")
def plan_cmd(
    model: ModelOpt, task: TaskOpt,
    max_latency_ms: Annotated[float, typer.Option("--max-latency-ms", help="Latency budget at --batch x --seq-len.")],
    batch: Annotated[int, typer.Option("--batch")] = 1,
    seq_len: Annotated[int, typer.Option("--seq-len")] = 128,
    max_size_mb: Annotated[Optional[float], typer.Option("--max-size-mb", help="Size budget on disk.")] = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Points of the task's main metric.")] = None,
    runtime: RuntimeOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where the chosen plan's artifact goes.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure and plan; run nothing.")] = False,
    results: Annotated[Path, typer.Option("--results", help="Measured results to plan from.")] = Path("benchmarks/results"),
    data_dir: DataDirOpt = None,
    threads: Annotated[int, typer.Option("--threads")] = 2,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    max_train_samples: Annotated[Optional[int], typer.Option("--max-train-samples", help="Shorten the plan's training (a quicker run).")] = None,
    json_out: JsonOpt = False,
):
    """Choose a composition of steps for a latency / size / accuracy budget, run it, and check the budget."""
    from slimbert.planner import Budget, make_plan, plan_table, run_plan

    if not dry_run and out is None:
        raise SlimbertError("--out DIR is needed to run the plan (or pass --dry-run to only plan)")
    budget = Budget(max_latency_ms, batch, seq_len, max_size_mb, max_drop, runtime).validate()
    plan = make_plan(model, task, budget, results=results, data_dir=data_dir, threads=threads, log=err.print)
    err.print(plan_table(plan))
    err.print(plan.message)
    if plan.chosen is None:
        raise SlimbertError(plan.message)
    if not dry_run:
        plan = run_plan(plan, out, data_dir=data_dir, threads=threads, overwrite=overwrite,
                        max_train_samples=max_train_samples, log=err.print)
        err.print(plan.message)
    if json_out:
        console.print_json(json.dumps(plan.to_dict(), default=str))
    else:
        print(plan.message)
    if plan.result is not None and not plan.result["met"]:
        sys.exit(3)


@bench_app.command("report")
def bench_report(
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")],
    results: Annotated[Path, typer.Option("--results", help="Directory of result JSONs.")] = Path("benchmarks/results"),
    peers: Annotated[Optional[Path], typer.Option("--peers", help="A `slimbert bench peers` record to include.")] = None,
    json_out: JsonOpt = False,
):
    """One self-contained HTML report: the survey's Table 1 measured, Pareto plots, the survey's findings answered."""
    from slimbert.bench.html_report import load_results, render_bench_report, write_report

    records = load_results(results)
    if peers is not None and not peers.is_file():
        raise SlimbertError(f"--peers {peers} is not a file (write one with `slimbert bench peers --out`)")
    write_report(out, render_bench_report(records, peers=json.loads(peers.read_text()) if peers else None))
    err.print(f"{len(records)} results -> {out}")
    if json_out:
        console.print_json(json.dumps({"report": str(out.resolve()), "results": len(records)}))
    else:
        print(out.resolve())


@bench_app.command("adaptive")
def bench_adaptive(
    model: ModelOpt, task: TaskOpt,
    exit_sweep: Annotated[Optional[list[str]], typer.Option("--exit", help="Exit criteria to sweep, e.g. entropy:0.05,0.1 or patience:1,2 (repeat).")] = None,
    retention: Annotated[Optional[list[str]], typer.Option("--retention", help="A retention schedule to try, e.g. 0.9,0.8,0.7,0.6,0.5 (repeat).")] = None,
    data_dir: DataDirOpt = None,
    threads: Annotated[int, typer.Option("--threads")] = 2,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved timing rounds (the fastest is kept).")] = 2,
    padded_examples: Annotated[int, typer.Option("--padded-examples", help="Dev sentences timed padded to the sequence length (0: natural lengths only).")] = 256,
    runtimes: Annotated[str, typer.Option("--runtimes", help="Comma-separated: pytorch,onnxruntime.")] = "pytorch,onnxruntime",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the record (JSON) here, and the accuracy-latency curves beside it.")] = None,
    json_out: JsonOpt = False,
):
    """Early exit and token dropping on real dev sentences: accuracy, exit layer, tokens, FLOPs and latency per setting."""
    from slimbert.bench.adaptive import (
        RUNTIMES,
        adaptive_table,
        parse_retention,
        parse_sweep,
        plot_adaptive,
        run_adaptive_bench,
        save_record,
    )

    chosen = tuple(r.strip() for r in runtimes.split(",") if r.strip())
    unknown = [r for r in chosen if r not in RUNTIMES]
    if unknown or not chosen:
        raise SlimbertError(f"--runtimes {runtimes!r}: choose from {', '.join(RUNTIMES)}")
    if rounds < 1:
        raise SlimbertError(f"--rounds must be >= 1, got {rounds}")
    if not (Path(model) / "slimbert.json").is_file():
        raise SlimbertError(f"--model {model} is not a slimbert artifact; pass the output of a recipe with an early-exit "
                            "or token-dropping step")
    exits = [c for spec in exit_sweep or [] for c in parse_sweep(spec)]
    record = run_adaptive_bench(Path(model), task, exits=exits, retentions=[parse_retention(r) for r in retention or []],
                                data_dir=data_dir, threads=threads, rounds=rounds, padded_examples=padded_examples,
                                runtimes=chosen, log=err.print)
    _emit_record(record, "adaptive", out, json_out, save_record, plot_adaptive, adaptive_table)


def _profile_target(model: str | None, config: Path | None):
    if (model is None) == (config is None):
        raise SlimbertError("pass exactly one of --model (a model to load) or --config (a config.json, random weights)")
    if config is not None:
        from slimbert.models.loading import model_from_config_file

        return model_from_config_file(config)
    from slimbert.models.loading import load_model

    bundle = load_model(model)
    return bundle.model, bundle.arch.inputs


def _exit_on_sigterm(signum, frame):
    # Turn `kill` into a normal exit so cleanup runs (compress removes its staging directory).
    sys.exit(128 + signum)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app()
    except SlimbertError as exc:
        if "--json" in sys.argv:  # a caller that asked for JSON gets its error as JSON too
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]", markup=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
