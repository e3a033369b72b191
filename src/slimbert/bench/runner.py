"""Run an experiment and write ``benchmarks/results/<name>.json``: the result plus the exact command.

Every figure in BENCHMARKS.md comes from one of these JSON files; the file records the command
that produced it (``slimbert bench run benchmarks/experiments/<name>.yaml``), the experiment as
run, and the environment. Results are never edited by hand: rerun the experiment instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from slimbert.bench.experiments import Experiment, load_experiment
from slimbert.config import to_plain
from slimbert.context import RunSettings
from slimbert.environment import environment

RESULTS_DIR = Path("benchmarks/results")


def _settings(exp: Experiment) -> RunSettings:
    return replace(RunSettings(), **exp.settings)


def _bundle_from_config(exp: Experiment):
    from transformers import AutoTokenizer

    from slimbert.models.bundle import ModelBundle
    from slimbert.models.loading import model_from_config_file, resolve_model_source

    model, _ = model_from_config_file(exp.config)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source(exp.tokenizer))
    return ModelBundle(model=model, tokenizer=tokenizer, source=f"{exp.config} (random weights)")


def run_experiment(path: str | Path, results_dir: Path = RESULTS_DIR, log=print) -> dict:
    exp = load_experiment(path)
    started = time.perf_counter()
    if exp.kind == "finetune":
        from slimbert.finetune import finetune
        from slimbert.training.config import TrainConfig

        cfg = replace(TrainConfig(), eval_every=exp.train.eval_every, grad_accum_steps=exp.train.grad_accum_steps)
        result = finetune(exp.model, exp.task, exp.output_dir, _settings(exp), train_config=cfg, log=log)
    else:
        from slimbert.api import compress

        model = _bundle_from_config(exp) if exp.config else exp.model
        out = compress(model, exp.task, exp.recipe, exp.output_dir, settings=_settings(exp),
                       latency_grid=tuple(tuple(g) for g in exp.latency.grid), latency_budget_s=exp.latency.budget_s,
                       threads=exp.latency.threads, evaluate=exp.evaluate, overwrite=True, log=log)
        result = out.report
    record = {
        "experiment": to_plain(exp),
        "command": f"slimbert bench run {Path(path).as_posix()}",
        "seconds": round(time.perf_counter() - started, 1),
        "result": result,
        "environment": environment(exp.latency.threads),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f"{exp.name}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(target)
    log(f"wrote {target}")
    return record


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
