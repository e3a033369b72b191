"""Reliability (issue 11): no data lost, runs reproducible, one run per output, clean errors for bad input.

One regression test per finding; each failed on the code before its fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slimbert.api import compress
from slimbert.config import MethodConfig
from slimbert.errors import ConfigError, ModelLoadError, SlimbertError
from slimbert.finetune import finetune
from slimbert.models.artifact import MANIFEST_NAME, WEIGHTS_NAME, load_compressed, save_compressed
from slimbert.models.loading import load_model
from slimbert.recipe import Recipe
from slimbert.steps.registry import register_method
from slimbert.training.config import TrainConfig
from slimbert.training.losses import LossTerm
from slimbert.training.settings import RunSettings

from helpers import make_tiny_model, write_tiny_glue

REPO = Path(__file__).resolve().parents[1]
QUICK = TrainConfig(max_steps=3, batch_size=8)


def _settings(glue, **kw) -> RunSettings:
    return RunSettings(**{"data_dir": str(glue), "max_train_samples": 32, "max_eval_samples": 16, "max_steps": 3, **kw})


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / WEIGHTS_NAME))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def slimbert(*args, env=None, timeout=300):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "slimbert.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)


# 1. --overwrite validates before destroying anything, and never deletes what is not a slimbert output
def test_finetune_overwrite_checks_the_inputs_before_deleting_anything(tiny_bert_dir, tiny_glue, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ModelLoadError, match="model directory not found"):
        finetune(str(tmp_path / "typo" / "model"), "sst2", out, _settings(tiny_glue), overwrite=True, log=lambda m: None)
    assert (out / "precious.txt").read_text() == "keep me"
    with pytest.raises(SlimbertError, match="not a slimbert output"):
        finetune(str(tiny_bert_dir), "sst2", out, _settings(tiny_glue), overwrite=True, log=lambda m: None)
    assert (out / "precious.txt").read_text() == "keep me"


def test_overwrite_never_deletes_the_input_model(tiny_model_dirs, tokenizer_dir, tiny_glue, tmp_path):
    model = tmp_path / "model"
    make_tiny_model("bert", model, tokenizer_dir)
    before = sorted(p.name for p in model.iterdir())
    for out in (model, model.parent):
        with pytest.raises(SlimbertError, match="holds the input model"):
            finetune(str(model), "sst2", out, _settings(tiny_glue), overwrite=True, log=lambda m: None)
        with pytest.raises(SlimbertError, match="holds the input model"):
            compress(model, "sst2", Recipe.from_dict({"steps": [{"method": "dynamic-int8"}]}), out,
                     settings=_settings(tiny_glue), overwrite=True, latency=False, log=lambda m: None)
    assert sorted(p.name for p in model.iterdir()) == before


# 2. --seed makes every path that creates parameters repeatable
@pytest.mark.parametrize("case", ["finetune-new-head", "start-from-new-head", "bilstm-student", "random-student"])
def test_same_command_twice_gives_identical_weights(case, tiny_bert_dir, tiny_glue, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    # STS-B needs a 1-output regression head: the 2-label tiny checkpoint gets a new one, initialised at random.
    task = "stsb" if "new-head" in case else "sst2"
    for out in outs:
        torch.manual_seed(len(str(out)) + out.name.encode()[0])  # whatever the process did before must not matter
        if case == "finetune-new-head":
            finetune(str(tiny_bert_dir), task, out, _settings(tiny_glue), train_config=QUICK, log=lambda m: None)
            continue
        steps = {
            "start-from-new-head": [{"method": "magnitude", "sparsity": 0.5, "train": {"max_steps": 2, "batch_size": 8}}],
            "bilstm-student": [{"method": "student", "architecture": "bilstm", "lstm_hidden": 8},
                               {"method": "distill", "train": {"max_steps": 2, "batch_size": 8}}],
            "random-student": [{"method": "student", "random_init": True, "num_layers": 1, "hidden_size": 16,
                                "num_attention_heads": 2, "intermediate_size": 20},
                               {"method": "distill", "preset": "last", "train": {"max_steps": 2, "batch_size": 8}}],
        }[case]
        compress(tiny_bert_dir, task, Recipe.from_dict({"steps": steps}), out, settings=_settings(tiny_glue),
                 latency=False, export=False, log=lambda m: None,
                 start_from=tiny_bert_dir if case == "start-from-new-head" else None)
    assert _same_weights(*outs)


# 3. one run per output directory
@dataclass(frozen=True)
class SlowConfig(MethodConfig):
    seconds: float = 30.0


def test_a_second_run_into_the_same_output_stops_at_once(tiny_bert_dir, tiny_glue, tmp_path):
    out = tmp_path / "out"
    args = ["finetune", "--model", tiny_bert_dir, "--task", "sst2", "--out", out, "--data-dir", tiny_glue,
            "--max-steps", "400", "--batch-size", "4", "--max-eval-samples", "8"]
    first = subprocess.Popen([sys.executable, "-m", "slimbert.cli", *map(str, args)], cwd=REPO,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / ".run" / "run.json").is_file() and time.time() < deadline:
            time.sleep(0.2)
        started = time.time()
        second = slimbert(*args)
        assert second.returncode == 2, second.stderr
        assert "another slimbert run" in second.stderr and f"pid {first.pid}" in second.stderr
        assert time.time() - started < 30
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    # kill -9 released the lock: the same command resumes.
    done = slimbert(*args[:-6], "--max-steps", "8", "--batch-size", "4", "--max-eval-samples", "8", "--overwrite")
    assert done.returncode == 0, done.stderr


# 4. resume and reuse are keyed by what was asked
def test_a_finished_finetune_is_reused_only_for_the_same_command(tiny_model_dirs, tiny_glue, tmp_path):
    out = tmp_path / "out"
    finetune(str(tiny_model_dirs["bert"]), "sst2", out, _settings(tiny_glue), train_config=QUICK, log=lambda m: None)
    again = finetune(str(tiny_model_dirs["bert"]), "sst2", out, _settings(tiny_glue, max_eval_samples=8),
                     train_config=QUICK, log=lambda m: None)  # eval samples do not change training: reused
    assert again.steps == 3
    with pytest.raises(SlimbertError, match="different model"):
        finetune(str(tiny_model_dirs["roberta"]), "sst2", out, _settings(tiny_glue), train_config=QUICK,
                 log=lambda m: None)
    with pytest.raises(SlimbertError, match="different task"):
        finetune(str(tiny_model_dirs["bert"]), "cola", out, _settings(tiny_glue), train_config=QUICK,
                 log=lambda m: None)


def test_an_interrupted_finetune_resumes_only_the_same_model(tiny_model_dirs, tiny_glue, tmp_path, monkeypatch):
    out = tmp_path / "out"
    import slimbert.report.training_summary as summary_module

    def crash(self, path):
        raise KeyboardInterrupt  # killed after training, before the summary: checkpoints stay
    monkeypatch.setattr(summary_module.TrainingSummary, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune(str(tiny_model_dirs["bert"]), "sst2", out, _settings(tiny_glue), train_config=QUICK, log=lambda m: None)
    monkeypatch.undo()
    assert (out / ".run").is_dir()
    with pytest.raises(SlimbertError, match="different model"):
        finetune(str(tiny_model_dirs["distilbert"]), "sst2", out, _settings(tiny_glue), train_config=QUICK,
                 log=lambda m: None)


@dataclass(frozen=True)
class TrainThenFailConfig(MethodConfig):
    pass


@register_method("test-train-then-fail", TrainThenFailConfig, family="pruning", accepts_distill=True)
def _train_then_fail(bundle, cfg, ctx):
    """Trains (leaving a checkpoint), then fails: the run is resumable."""
    ctx.train(bundle, QUICK, name="t")
    raise RuntimeError("fails after training")


def test_compress_resumes_only_the_same_run(tiny_model_dirs, tiny_glue, tmp_path):
    out = tmp_path / "out"
    recipe = Recipe.from_dict({"steps": [{"method": "test-train-then-fail"}]})
    with pytest.raises(RuntimeError):
        compress(tiny_model_dirs["bert"], "sst2", recipe, out, settings=_settings(tiny_glue), latency=False,
                 log=lambda m: None)
    assert (tmp_path / ".out.work").is_dir()
    with pytest.raises(SlimbertError, match="different model"):
        compress(tiny_model_dirs["roberta"], "sst2", recipe, out, settings=_settings(tiny_glue), latency=False,
                 log=lambda m: None)
    with pytest.raises(SlimbertError, match="different"):
        compress(tiny_model_dirs["bert"], "sst2", recipe, out, settings=_settings(tiny_glue, seed=7), latency=False,
                 log=lambda m: None)


# 5. non-finite values
def test_non_finite_settings_and_fields_are_refused():
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="finite"):
            RunSettings(learning_rate=bad).validate()
        with pytest.raises(ConfigError, match="finite"):
            Recipe.from_dict({"steps": [{"method": "magnitude", "train": {"epochs": bad}}]})
        with pytest.raises(ConfigError, match="finite"):
            Recipe.from_dict({"steps": [{"method": "prune-heads", "distill": {"temperature": bad}}]})
    proc = slimbert("finetune", "--model", "x", "--task", "sst2", "--out", "/tmp/never", "--lr", "inf")
    assert proc.returncode == 2 and "finite" in proc.stderr and "Traceback" not in proc.stderr


class NanAfter(LossTerm):
    name = "nan"

    def __init__(self):
        super().__init__(weight=1.0)
        self.calls = 0

    def forward(self, batch, outputs, model):
        self.calls += 1
        return outputs.logits.sum() * (float("nan") if self.calls >= 2 else 0.0)


@dataclass(frozen=True)
class DivergeConfig(MethodConfig):
    pass


@register_method("test-diverge", DivergeConfig, family="pruning")
def _diverge(bundle, cfg, ctx):
    ctx.train(bundle, QUICK, extra_terms=[NanAfter()], name="diverge")
    return bundle


def test_a_non_finite_loss_stops_the_run_and_publishes_nothing(tiny_bert_dir, tiny_glue, tmp_path):
    with pytest.raises(SlimbertError, match=r"non-finite loss \(nan\) at step 2/3 .*recipe step 1: test-diverge.*learning rate"):
        compress(tiny_bert_dir, "sst2", Recipe.from_dict({"steps": [{"method": "test-diverge"}]}), tmp_path / "out",
                 settings=_settings(tiny_glue), latency=False, log=lambda m: None)
    assert not (tmp_path / "out").exists()


# 6. sequence length against the model's positions
def test_sequence_length_is_clamped_or_refused(tokenizer_dir, tmp_path):
    glue = write_tiny_glue(tmp_path / "glue", n_train=16, n_dev=8)
    long_text = " ".join(["good movie"] * 60)  # ~120 pieces, more than the tiny model's 64 positions
    with (glue / "SST-2" / "dev.tsv").open("a") as f:
        f.write(f"{long_text}\t1\n")
    model = tmp_path / "model"
    make_tiny_model("bert", model, tokenizer_dir)
    messages = []
    summary = finetune(str(model), "sst2", tmp_path / "out", RunSettings(data_dir=str(glue), max_steps=1),
                       log=messages.append)
    assert summary.steps == 1 and any("--max-seq-len 64" in m for m in messages)
    with pytest.raises(ConfigError, match="--max-seq-len 100 is more than the 64 positions"):
        finetune(str(model), "sst2", tmp_path / "out2", RunSettings(data_dir=str(glue), max_steps=1, max_seq_len=100),
                 log=lambda m: None)


# 7. load errors are ModelLoadErrors naming the file; shapes checked before allocation
@pytest.fixture
def artifact(tiny_bert_dir, tmp_path):
    path = tmp_path / "artifact"
    save_compressed(load_model(tiny_bert_dir), path)
    return path


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: (p / WEIGHTS_NAME).write_bytes((p / WEIGHTS_NAME).read_bytes()[:1000]), WEIGHTS_NAME),
    (lambda p: (p / WEIGHTS_NAME).write_bytes(b""), WEIGHTS_NAME),
    (lambda p: (p / WEIGHTS_NAME).unlink(), WEIGHTS_NAME),
    (lambda p: (p / MANIFEST_NAME).write_text("{not json"), MANIFEST_NAME),
    (lambda p: (p / MANIFEST_NAME).write_text("[1, 2]"), MANIFEST_NAME),
    (lambda p: (p / MANIFEST_NAME).write_text(json.dumps({"format": "slimbert/1"})), MANIFEST_NAME),
    (lambda p: (p / MANIFEST_NAME).write_text(json.dumps({"format": "slimbert/1", "modules": {"x": 3}})), MANIFEST_NAME),
    (lambda p: (p / MANIFEST_NAME).write_text(json.dumps(
        {"format": "slimbert/1", "modules": {"classifier": {"kind": "no-such-kind", "spec": {}}}})), "no-such-kind"),
    (lambda p: (p / "config.json").write_text("{"), "config.json"),
])
def test_damaged_artifacts_fail_with_a_model_load_error(artifact, damage, fragment):
    damage(artifact)
    with pytest.raises(ModelLoadError, match=fragment):
        load_compressed(artifact)


def test_declared_shapes_are_checked_against_the_weights_before_allocating(artifact):
    manifest = json.loads((artifact / MANIFEST_NAME).read_text())
    manifest["modules"]["classifier"] = {"kind": "linear", "spec": {"in_features": 200000, "out_features": 200000,
                                                                   "bias": True}}
    (artifact / MANIFEST_NAME).write_text(json.dumps(manifest))
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"classifier.weight.*\(200000, 200000\).*model.safetensors.*\(2, 32\)"):
        load_compressed(artifact)
    assert time.perf_counter() - started < 10  # 160 GB were never allocated


def test_unwritable_output_and_non_utf8_recipe_fail_before_loading(tiny_bert_dir, tiny_glue, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    loaded = []
    with pytest.raises(SlimbertError, match="cannot write"):
        compress(tiny_bert_dir, "sst2", Recipe.from_dict({"steps": [{"method": "dynamic-int8"}]}), blocker / "out",
                 settings=_settings(tiny_glue), log=loaded.append)
    assert loaded == []
    with pytest.raises(SlimbertError, match="cannot write"):
        finetune(str(tiny_bert_dir), "sst2", blocker / "out", _settings(tiny_glue), log=loaded.append)
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: caf\xe9\nsteps:\n  - method: dynamic-int8\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        Recipe.from_file(recipe)


# 8. a failure that cannot resume leaves nothing hidden behind
@dataclass(frozen=True)
class FailFirstConfig(MethodConfig):
    pass


@register_method("test-fail-at-once", FailFirstConfig, family="pruning")
def _fail_at_once(bundle, cfg, ctx):
    raise RuntimeError("fails before any training")


def test_no_resumable_work_is_claimed_when_there_is_none(tiny_bert_dir, tiny_glue, tmp_path):
    messages = []
    with pytest.raises(RuntimeError):
        compress(tiny_bert_dir, "sst2", Recipe.from_dict({"steps": [{"method": "test-fail-at-once"}]}), tmp_path / "out",
                 settings=_settings(tiny_glue), latency=False, log=messages.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not any("resumable work kept" in m for m in messages)


# 9. plain, unwrapped output when piped; --json everywhere
def test_piped_output_is_not_wrapped(tmp_path):
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / "and-another-long-one"
    deep.mkdir(parents=True)
    recipe = deep / "recipe-with-a-long-name.yaml"
    recipe.write_text((REPO / "recipes" / "dynamic-int8.yaml").read_text())
    proc = slimbert("validate", recipe)
    assert proc.returncode == 0 and str(recipe) in proc.stdout
    methods = slimbert("methods")
    assert "freeze_mask_after_ramp" in methods.stdout and "…" not in methods.stdout
    bad = deep / "bad-recipe-with-a-long-name.yaml"
    bad.write_text("steps:\n  - method: dynamic-int8\n    quantise_embeddings: true\n")
    err = slimbert("validate", bad)
    assert err.returncode == 2 and str(bad) in err.stderr


def test_every_command_speaks_json(tiny_bert_dir, tiny_glue, tmp_path):
    validate = json.loads(slimbert("validate", REPO / "recipes" / "heads.yaml", "--model", tiny_bert_dir, "--json").stdout)
    assert validate["valid"] is True and validate["steps"] == ["prune-heads"] and validate["final_shape"]["layers"] == 2
    methods = json.loads(slimbert("methods", "--json").stdout)
    assert {m["name"] for m in methods} >= {"dynamic-int8", "movement"} and all("fields" in m for m in methods)
    ft = slimbert("finetune", "--model", tiny_bert_dir, "--task", "sst2", "--out", tmp_path / "ft", "--data-dir",
                  tiny_glue, "--max-steps", "2", "--max-eval-samples", "8", "--json")
    assert ft.returncode == 0, ft.stderr
    assert json.loads(ft.stdout)["steps"] == 2
    bad = slimbert("validate", tmp_path / "missing.yaml", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"].startswith("recipe file not found")


def test_every_command_has_a_json_option():
    import typer

    from slimbert.cli import app

    def commands(group, prefix=""):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    found = dict(commands(typer.main.get_command(app)))
    assert {"finetune", "eval", "compress", "validate", "methods", "profile", "bench run", "bench table"} <= set(found)
    missing = [name for name, command in found.items()
               if not any("--json" in getattr(param, "opts", ()) for param in command.params)]
    assert missing == []
