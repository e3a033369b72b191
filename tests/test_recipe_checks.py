"""What can be checked before any work: step options (the distill: block), step order, and every step against
the model's shape (``Recipe.check``, ``slimbert validate --model``, and ``compress`` before its first step)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from slimbert.api import compress
from slimbert.errors import ConfigError
from slimbert.model_shape import ModelShape
from slimbert.models.shape import shape_of_spec
from slimbert.recipe import Recipe
from slimbert.steps.teacher import StepDistillation
from slimbert.training.settings import RunSettings

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))

# MiniLM-L6's shape: 6 layers of width 384, 12 heads of 32, FFN 1536.
MINILM = ModelShape(model_type="bert", is_transformer=True, layers=6, hidden=384, head_size=32, heads=(12,) * 6,
                    intermediate=(1536,) * 6, vocab_size=30522, max_positions=512)


def _check(*steps, model=MINILM, teacher=None):
    return Recipe.from_dict({"name": "r", "steps": list(steps)}).check(model, teacher)


# -- the distill: block, an option of the step
def test_distill_block_is_a_step_option_merged_onto_the_method_default():
    heads = Recipe.from_dict({"steps": [{"method": "prune-heads", "distill": {"temperature": 3.0}}]}).steps[0]
    assert heads.distill == StepDistillation(temperature=3.0) and not hasattr(heads.config, "distill")
    assert Recipe.from_dict({"steps": [{"method": "prune-heads"}]}).steps[0].distill is None
    ternary = Recipe.from_dict({"steps": [{"method": "ternary"}]}).steps[0].distill
    assert (ternary.temperature, ternary.hidden_weight, ternary.hard_label_weight) == (1.0, 1.0, 0.0)
    partial = Recipe.from_dict({"steps": [{"method": "ternary", "distill": {"hard_label_weight": 0.5}}]}).steps[0]
    assert partial.distill == replace(ternary, hard_label_weight=0.5)
    off = Recipe.from_dict({"steps": [{"method": "ternary", "distill": None}]})
    assert off.steps[0].distill is None
    assert Recipe.from_dict(off.to_dict()) == off  # "distill: null" survives a round trip (overrides rely on it)


@pytest.mark.parametrize("step, fragment", [
    ({"method": "dynamic-int8", "distill": {}}, "takes no distill: block (it does not train)"),
    ({"method": "distill", "distill": {}}, "configures its own distillation losses"),
    ({"method": "drop-layers", "train": None, "distill": {}}, "needs training, but train is null"),
    ({"method": "magnitude", "distill": {"temperature": 0}}, "temperature must be in"),
    ({"method": "magnitude", "distill": {"tempreature": 2}}, "unknown field(s) 'tempreature'"),
    ({"method": "magnitude", "distill": 2}, "expected a mapping"),
])
def test_bad_distill_blocks(step, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Recipe.from_dict({"steps": [step]})


# -- step order and shapes
def test_steps_that_need_float_linears_cannot_follow_quantization():
    with pytest.raises(ConfigError, match=r"steps\[1\] \(prune-heads\).*before quantization steps"):
        _check({"method": "dynamic-int8"}, {"method": "prune-heads"})
    with pytest.raises(ConfigError, match=r"steps\[1\] \(dynamic-int8\)"):  # sparse storage: no plain linears left
        _check({"method": "magnitude"}, {"method": "dynamic-int8"})
    _check({"method": "magnitude", "storage": {"format": "dense"}}, {"method": "dynamic-int8"})
    with pytest.raises(ConfigError, match="already quantized"):
        _check({"method": "prune-ffn"}, model=replace(MINILM, compressed_linears=True))


@pytest.mark.parametrize("steps, fragment", [
    ([{"method": "drop-layers", "num_drop": 6}], "can drop 1..5 of 6 layers"),
    ([{"method": "drop-layers", "num_drop": 5, "strategy": "alternate"}], "alternate dropping removes at most 3"),
    ([{"method": "drop-layers", "num_drop": 3}, {"method": "drop-layers", "num_drop": 3}], r"steps\[1\].*can drop 1..2 of 3"),
    ([{"method": "layerdrop", "num_drop": 6}], "can drop 1..5 of 6 layers"),
    ([{"method": "prune-heads", "fraction": 0.95}], "would empty a layer"),
    ([{"method": "prune-ffn", "fraction": 0.9999}], "would empty a layer"),
    ([{"method": "block-movement", "block_rows": 100}], "does not tile the 384x384 attention matrices"),
    ([{"method": "student", "keep_layers": [0, 6]}], r"layer indices \[6\] out of range"),
    ([{"method": "student", "num_layers": 4, "layer_selection": "every-other"}], "keeps at most 3 of 6"),
    ([{"method": "student", "architecture": "bilstm"}, {"method": "prune-heads"}], "has none"),
    ([{"method": "student", "num_layers": 3}, {"method": "distill", "matches": [{"teacher": 6, "student": 4}]}],
     "student layer 4 is out of range; the student has 3 layers"),
    ([{"method": "distill", "matches": [{"teacher": 7, "student": 1}]}], "teacher layer 7 is out of range"),
    ([{"method": "distill", "relation_heads": 5, "preset": "last", "preset_feature": "attention_relation"}],
     "relation_heads=5 does not divide"),
    ([{"method": "student", "num_layers": 3}, {"method": "prune-heads", "distill": {"hidden_weight": 1.0}}],
     "the student has 3 layers of width 384 and the teacher 6"),
])
def test_shape_errors_before_any_work(steps, fragment):
    with pytest.raises(ConfigError, match=fragment):
        _check(*steps)


def test_the_checked_shape_follows_the_steps():
    final = _check({"method": "drop-layers", "num_drop": 2}, {"method": "prune-ffn", "fraction": 0.5},
                   {"method": "dynamic-int8"})
    assert final.layers == 4 and final.total_neurons == 4 * 1536 - round(0.5 * 4 * 1536)
    assert final.compressed_linears and not final.uniform_layers
    student = _check({"method": "student", "keep_layers": [1, 3]})
    assert student.layers == 2 and student.heads == (12, 12)
    assert _check({"method": "student", "architecture": "cnn"}).is_transformer is False


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_applies_to_minilm(path):
    Recipe.from_file(path).check(MINILM)


def test_shape_of_a_model_directory(tiny_model_dirs):
    shape = shape_of_spec(tiny_model_dirs["distilbert"])
    assert (shape.model_type, shape.layers, shape.hidden, shape.heads, shape.intermediate) == \
        ("distilbert", 2, 32, (4, 4), (37, 37))
    roberta = shape_of_spec(tiny_model_dirs["roberta"])
    assert roberta.max_positions == 80 - 1  # RoBERTa positions start after the padding index (0 here)


def test_compress_stops_before_any_work_on_a_step_that_cannot_apply(tiny_bert_dir, tiny_glue, tmp_path):
    """drop-layers num_drop: 5 on a 2-layer model used to fail after the baseline was measured and leave
    .OUT.work behind; now nothing runs and nothing is written."""
    recipe = Recipe.from_dict({"steps": [{"method": "dynamic-int8"}, {"method": "drop-layers", "num_drop": 5}]})
    messages = []
    with pytest.raises(ConfigError, match=r"steps\[1\] \(drop-layers\)"):
        compress(tiny_bert_dir, "sst2", recipe, tmp_path / "out", settings=RunSettings(data_dir=str(tiny_glue)),
                 log=messages.append)
    assert messages == [] and list(tmp_path.iterdir()) == []


def test_validate_with_a_model(tiny_bert_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - method: drop-layers\n    num_drop: 2\n")
    def run(*args):
        return subprocess.run([sys.executable, "-m", "slimbert.cli", "validate", *map(str, args)], capture_output=True,
                              text=True, cwd=REPO, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert run(bad).returncode == 0  # valid on its own
    failed = run(bad, "--model", tiny_bert_dir)
    assert failed.returncode == 2 and "bad: steps[0] (drop-layers): can drop 1..1 of 2 layers" in failed.stderr
    ok = run(REPO / "recipes" / "heads.yaml", "--model", tiny_bert_dir)
    assert ok.returncode == 0 and "2 layers, 8 heads" in ok.stdout
