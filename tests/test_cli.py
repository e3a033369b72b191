"""The command line, run as a user runs it (a subprocess): smoke tests, errors, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


def slimbert(*args, env=None, timeout=300, check=True):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "slimbert.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_methods_and_validate():
    assert "dynamic-int8" in slimbert("methods").stdout
    ok = slimbert("validate", REPO / "recipes" / "dynamic-int8.yaml")
    assert "valid recipe with 1 step" in ok.stdout


def test_user_errors_exit_2_with_message_and_no_traceback(tmp_path, tiny_bert_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - method: dynamic-int8\n    quantise_embeddings: true\n")
    proc = slimbert("validate", bad, check=False)
    assert proc.returncode == 2
    assert "unknown field(s) 'quantise_embeddings'" in proc.stderr and "quantize_embeddings" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = slimbert("eval", "--model", tiny_bert_dir, "--task", "sst2", check=False)
    assert proc.returncode == 2 and "SLIMBERT_DATA" in proc.stderr and "Traceback" not in proc.stderr

    proc = slimbert("eval", "--model", tmp_path / "nope[bert]", "--task", "sst2", check=False)
    assert proc.returncode == 2 and "model directory not found" in proc.stderr
    assert "nope[bert]" in proc.stderr  # printed as written: rich does not read '[bert]' as a style tag


def test_eval_json(tiny_bert_dir, tiny_glue):
    proc = slimbert("eval", "--model", tiny_bert_dir, "--task", "sst2", "--data-dir", tiny_glue,
                    "--max-eval-samples", "20", "--json")
    data = json.loads(proc.stdout)
    assert data["examples"] == {"validation": 20} and 0 <= data["metrics"]["accuracy"] <= 1


def test_eval_reads_data_dir_from_environment(tiny_bert_dir, tiny_glue):
    proc = slimbert("eval", "--model", tiny_bert_dir, "--task", "mrpc", "--json", env={"SLIMBERT_DATA": str(tiny_glue)})
    assert set(json.loads(proc.stdout)["metrics"]) == {"f1", "accuracy"}


def test_profile_json_and_files(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(tiny_config("bert").to_json_string())
    proc = slimbert("profile", "--config", cfg, "--seq-len", "16", "--runs", "2", "--json", "--out", tmp_path / "prof")
    data = json.loads(proc.stdout)
    assert {"params", "flops", "time_ms"} <= set(data["components"]["ffn"])
    assert {p.name for p in (tmp_path / "prof").iterdir()} == {"profile.json", "profile.md", "profile.png"}


def test_compress_cli(tiny_bert_dir, tiny_glue, tmp_path):
    out = tmp_path / "q"
    proc = slimbert("compress", "--model", tiny_bert_dir, "--task", "sst2", "--recipe", REPO / "recipes" / "dynamic-int8.yaml",
                    "--out", out, "--data-dir", tiny_glue, "--max-eval-samples", "16", "--no-latency")
    assert "report" in proc.stdout and (out / "model.onnx").is_file()
    again = slimbert("eval", "--model", out, "--task", "sst2", "--data-dir", tiny_glue, "--max-eval-samples", "16",
                     "--onnx", "--json")
    assert json.loads(again.stdout)["runtime"] == "onnxruntime"


def test_finetune_survives_kill_9_and_resumes(tiny_bert_dir, tiny_glue, tmp_path):
    out = tmp_path / "teacher"
    args = [sys.executable, "-m", "slimbert.cli", "finetune", "--model", str(tiny_bert_dir), "--task", "sst2",
            "--data-dir", str(tiny_glue), "--out", str(out), "--epochs", "40", "--eval-every", "8",
            "--max-eval-samples", "16", "--lr", "3e-3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    latest = out / ".run" / "checkpoints" / "LATEST"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step-0000016":
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = int(latest.read_text().strip().split("-")[1])
    assert not (out / "training_summary.json").exists()

    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed from checkpoint at step {killed_at}/320" in done.stderr.replace("\n", " ")
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 320 and summary["resumed_from_step"] == killed_at
    assert summary["metrics"]["accuracy"] >= 0.9
    assert not (out / ".run").exists()
    # A finished directory is reused, not retrained.
    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert "reusing it" in again.stderr.replace("\n", " ")


def test_finetune_holdout_sets_examples_aside(tiny_bert_dir, tiny_glue, tmp_path):
    """`finetune --holdout N`: a teacher that never trains on the split its compressed students are chosen on."""
    total = sum(1 for _ in open(Path(tiny_glue) / "SST-2" / "train.tsv")) - 1  # minus the header
    proc = slimbert("finetune", "--model", tiny_bert_dir, "--task", "sst2", "--data-dir", tiny_glue,
                    "--out", tmp_path / "teacher", "--holdout", "40", "--max-steps", "2", "--max-eval-samples", "8",
                    "--json")
    summary = json.loads(proc.stdout)
    assert summary["train_examples"] == total - 40 and summary["settings"]["holdout"] == 40


def test_holdout_mode_sentences_and_a_wrong_mode(tiny_bert_dir, tiny_glue, tmp_path):
    """`--holdout-mode sentences` reaches the run (recorded in its settings); a wrong mode or one without
    --holdout is refused before anything is trained."""
    proc = slimbert("finetune", "--model", tiny_bert_dir, "--task", "sst2", "--data-dir", tiny_glue,
                    "--out", tmp_path / "teacher", "--holdout", "10", "--holdout-mode", "sentences",
                    "--max-steps", "1", "--max-eval-samples", "8", "--json")
    assert json.loads(proc.stdout)["settings"]["holdout_mode"] == "sentences"
    for extra, message in ((["--holdout", "10", "--holdout-mode", "phrases"], "must be random or sentences"),
                           (["--holdout-mode", "sentences"], "needs holdout")):
        bad = slimbert("finetune", "--model", tiny_bert_dir, "--task", "sst2", "--data-dir", tiny_glue,
                       "--out", tmp_path / "bad", *extra, "--max-steps", "1", check=False)
        assert bad.returncode != 0 and message in bad.stderr.replace("\n", " "), bad.stderr
        assert not (tmp_path / "bad").exists()


def test_stderr_prints_data_as_written(capsys):
    """Logs, notes and plans go through the stderr console: '[torchao]' in them is data, not a rich style tag."""
    from slimbert.cli import err

    err.print('optional: pip install -e ".[torchao]"')
    assert '".[torchao]"' in capsys.readouterr().err
