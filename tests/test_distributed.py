"""Training beyond one process: ``accelerate launch`` with 2 CPU processes (gloo) runs fine-tuning and a
distillation step; both ranks see world size 2, the main process alone writes the result, which reloads and
matches a single-process run with the same global batch (dropout off, so the two runs differ only by the order
of floating-point sums). On GPUs and nodes the same commands run under ``accelerate launch`` as usual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from slimbert.models.artifact import load_compressed
from slimbert.models.loading import load_model

from helpers import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _run(args: list, processes: int, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true"}
    if processes == 1:
        cmd = [sys.executable, "-m", "slimbert.cli", *map(str, args)]
    else:
        cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
               "-m", "slimbert.cli", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _relative_distance(a: Path, b: Path, start: Path) -> float:
    """||W_a - W_b|| / ||W_a - W_start||: how far apart two runs ended, against how far training moved."""
    wa, wb, w0 = load_file(str(a)), load_file(str(b)), load_file(str(start))
    apart = sum(float(((wa[k] - wb[k]) ** 2).sum()) for k in wa)
    moved = sum(float(((wa[k] - w0[k]) ** 2).sum()) for k in wa if k in w0 and wa[k].shape == w0[k].shape)
    return (apart / moved) ** 0.5


@pytest.fixture(scope="module")
def dropout_free_model(tmp_path_factory, tokenizer_dir) -> Path:
    path = tmp_path_factory.mktemp("no-dropout")
    make_tiny_model("bert", path, tokenizer_dir)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_finetune_and_distill_on_two_processes(dropout_free_model, tiny_glue, tmp_path):
    common = ["--task", "sst2", "--data-dir", tiny_glue, "--max-eval-samples", "16", "--lr", "1e-3"]
    runs = {}
    for processes, port in ((1, 0), (2, 29531)):
        out = tmp_path / f"ft{processes}"
        proc = _run(["finetune", "--model", dropout_free_model, "--out", out, "--max-steps", "20", "--batch-size", "16",
                     *common], processes, port)
        runs[processes] = (out, proc)
    out, proc = runs[2]
    assert "process 0 of 2" in proc.stderr and "process 1 of 2" in proc.stderr  # both ranks, world size 2
    assert proc.stdout.count("model written to") == 1  # the main process writes and reports, once
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 20
    load_model(out)  # reloads
    assert _relative_distance(runs[1][0] / "model.safetensors", out / "model.safetensors",
                              dropout_free_model / "model.safetensors") < 1e-3

    recipe = tmp_path / "distill.yaml"
    recipe.write_text("name: tiny-distill\nsteps:\n  - method: student\n    num_layers: 1\n"
                      "  - method: distill\n    train: {max_steps: 8, batch_size: 16, learning_rate: 1.0e-3}\n")
    outs = {}
    for processes, port in ((1, 0), (2, 29532)):
        outs[processes] = tmp_path / f"distill{processes}"
        proc = _run(["compress", "--model", runs[1][0], "--recipe", recipe, "--out", outs[processes], "--no-latency",
                     "--task", "sst2", "--data-dir", tiny_glue, "--max-eval-samples", "16"], processes, port)
    assert "distill (0 matches, logits kl): process 1 of 2" in proc.stderr
    assert proc.stdout.count("written to") == 1 and (outs[2] / "report.json").is_file()
    assert load_compressed(outs[2]).model.config.num_hidden_layers == 1
    # The student starts as the teacher's layer 0 (every-other selection keeps layer 0 of 2).
    student_start = tmp_path / "student-start.safetensors"
    teacher = load_file(str(runs[1][0] / "model.safetensors"))
    save_file({k: v for k, v in teacher.items() if not k.startswith("bert.encoder.layer.1.")}, str(student_start))
    assert _relative_distance(outs[1] / "model.safetensors", outs[2] / "model.safetensors", student_start) < 1e-3
