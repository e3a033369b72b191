"""Run an experiment and write ``benchmarks/results/<name>.json``: the result plus the exact command.

Every figure in BENCHMARKS.md comes from one of these JSON files; the file records the command
that produced it (``slimbert bench run benchmarks/experiments/<name>.yaml``), the experiment as
run, and the environment. Results are never edited by hand: rerun the experiment instead.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

from slimbert.bench.experiments import Experiment, load_experiment
from slimbert.bench.records import BenchRecord, load_record, records_in
from slimbert.errors import ConfigError
from slimbert.report.card import Environment
from slimbert.training.settings import RunSettings

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


def run_experiment(path: str | Path, results_dir: Path = RESULTS_DIR, log=print, latency: bool = True) -> BenchRecord:
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
        out = compress(model, exp.task, exp.load_recipe(), exp.output_dir, settings=_settings(exp),
                       latency_grid=tuple(tuple(g) for g in exp.latency.grid), latency_budget_s=exp.latency.budget_s,
                       threads=exp.latency.threads, evaluate=exp.evaluate, latency=latency, overwrite=True,
                       start_from=exp.start_from, log=log)
        result = out.report
    record = BenchRecord(experiment=exp, command=f"slimbert bench run {Path(path).as_posix()}",
                         seconds=round(time.perf_counter() - started, 1), result=result,
                         environment=Environment.current(exp.latency.threads))
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f"{exp.name}.json"
    record.save(target)
    log(f"wrote {target}")
    return record


def retime_experiment(path: str | Path, results_dir: Path = RESULTS_DIR, log=print) -> BenchRecord:
    """Measure latency again for a finished compress experiment, from its saved artifacts.

    Training experiments may run while the machine does other work (accuracy does not care);
    their latency is then re-measured in a quiet window, all in one go, so that every latency
    figure in BENCHMARKS.md was taken under the same conditions.
    """
    from slimbert.export.onnx import export_onnx
    from slimbert.export.openvino import OPENVINO_DIR, OPENVINO_XML, export_openvino
    from slimbert.measure.latency import LatencyTarget, measure_latency
    from slimbert.models.artifact import ONNX_NAME, load_compressed
    from slimbert.models.loading import load_model
    from slimbert.report.markdown import render_markdown

    exp = load_experiment(path)
    target = results_dir / f"{exp.name}.json"
    if exp.kind != "compress" or not target.is_file():
        raise ConfigError(f"{exp.name}: retime needs a finished compress experiment ({target} not found)")
    record = load_record(target)
    baseline = _bundle_from_config(exp) if exp.config else load_model(exp.model)
    compressed = load_compressed(exp.output_dir)
    with tempfile.TemporaryDirectory() as tmp:
        base_onnx = export_onnx(baseline, Path(tmp) / "baseline.onnx")
        names, vocab = baseline.arch.inputs, baseline.model.config.vocab_size
        comp_onnx = exp.output_dir / ONNX_NAME
        comp_ir = exp.output_dir / OPENVINO_DIR / OPENVINO_XML
        # OpenVINO too, as the run timed it: the baseline's fp32 IR, the artifact's own IR when it has one.
        base_ir = export_openvino(baseline, Path(tmp) / "baseline-openvino").path if comp_ir.is_file() else None
        timings = measure_latency(
            [LatencyTarget("baseline", baseline.model, str(base_onnx.path), names, vocab,
                           str(base_ir) if base_ir else None),
             LatencyTarget("compressed", compressed.model, str(comp_onnx) if comp_onnx.is_file() else None, names,
                           vocab, str(comp_ir) if comp_ir.is_file() else None)],
            grid=tuple(tuple(g) for g in exp.latency.grid), threads=exp.latency.threads, budget_s=exp.latency.budget_s,
            progress=log)
    card = record.card.with_latency(timings["baseline"], timings["compressed"], Environment.current(exp.latency.threads))
    record = record.with_card(card, f"slimbert bench retime {Path(path).as_posix()}")
    record.save(target)
    card.save(exp.output_dir / "report.json")
    (exp.output_dir / "report.md").write_text(render_markdown(card))
    log(f"re-timed {target}")
    return record


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, BenchRecord]:
    """``{experiment name: record}`` for every ``slimbert bench run`` record in ``results_dir``.

    Files there that are not bench records (e.g. a probe's output) are skipped: probes keep theirs in
    ``benchmarks/probes/results/``.
    """
    return records_in(results_dir)
