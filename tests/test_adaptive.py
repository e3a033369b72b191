"""Early exit and token dropping: the adaptive runner, its criteria and token selection, the ONNX segments, and the
methods' errors (survey section 3.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import run_steps, tiny_config

from slimbert.errors import ConfigError, SlimbertError
from slimbert.export.onnx_segments import ADAPTIVE_DIR, OnnxSegments, export_segments
from slimbert.models.adaptive.criteria import ExitCriterion, PatienceState, normalised_entropy, should_exit
from slimbert.models.adaptive.exit_heads import ExitHeads
from slimbert.models.adaptive.runner import AdaptiveSettings, run_adaptive
from slimbert.models.adaptive.segments import TorchSegments
from slimbert.models.adaptive.token_dropping import keep_counts, select_tokens, significance
from slimbert.models.bundle import ModelBundle

ARCHS = ("bert", "roberta", "distilbert")


def four_layer_model(arch: str, seed: int = 0, exit_heads: bool = True, pooling: str = "mean"):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    layers = {"n_layers": 4} if arch == "distilbert" else {"num_hidden_layers": 4}
    model = AutoModelForSequenceClassification.from_config(tiny_config(arch, **layers)).eval()
    if exit_heads:
        model.exit_heads = ExitHeads(32, 2, 3, pooling)
        with torch.no_grad():  # sharper heads, so that their confidences spread out
            for linear in model.exit_heads.classifier:
                linear.weight.mul_(30)
    return model.eval()


def batch_of(arch: str, lengths=(12, 7, 3, 10), seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(5, 99, (len(lengths), width), generator=gen)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids * mask
    ids[:, 0] = 2
    out = {"input_ids": ids, "attention_mask": mask}
    if arch == "bert":
        out["token_type_ids"] = torch.zeros_like(ids)
    return out


def alone(inputs: dict[str, torch.Tensor], b: int) -> dict[str, torch.Tensor]:
    n = int(inputs["attention_mask"][b].sum())
    return {k: v[b:b + 1, :n] for k, v in inputs.items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_runner_without_exits_or_dropping_equals_the_forward(arch):
    model = four_layer_model(arch)
    inputs = batch_of(arch)
    with torch.no_grad():
        out = run_adaptive(TorchSegments(model), inputs, AdaptiveSettings())
        reference = model(**inputs).logits
    assert (out.logits - reference).abs().max() < 1e-5
    assert out.exit_layer.tolist() == [4, 4, 4, 4]
    assert out.tokens[:, 0].tolist() == [12, 7, 3, 10]


def first_exit_logits(model, inputs) -> torch.Tensor:
    """The first exit head's logits (B, C), computed by hand."""
    segments, mask = TorchSegments(model), inputs["attention_mask"]
    with torch.no_grad():
        return model.exit_heads.logits(0, segments.layer(0, segments.embed(inputs), mask, False)[0], mask)


def _threshold_splitting_layer_one(model, inputs) -> float:
    """An entropy threshold that some, not all, examples meet at the first exit head."""
    first = first_exit_logits(model, inputs)
    entropies = sorted(normalised_entropy(first).tolist())
    return (entropies[1] + entropies[2]) / 2


@pytest.mark.parametrize("arch,pooling", [(a, "mean") for a in ARCHS] + [("bert", "cls")])
def test_exit_decisions_do_not_depend_on_the_batch_and_rows_leave(arch, pooling):
    model = four_layer_model(arch, pooling=pooling)
    inputs = batch_of(arch)
    settings = AdaptiveSettings(exit=ExitCriterion("entropy", _threshold_splitting_layer_one(model, inputs)))
    segments = TorchSegments(model)
    rows_seen = []
    original = segments.layer

    def counting(i, hidden, mask, want):
        rows_seen.append(hidden.shape[0])
        return original(i, hidden, mask, want)

    segments.layer = counting
    with torch.no_grad():
        batched = run_adaptive(segments, inputs, settings)
    assert len(set(batched.exit_layer.tolist())) > 1  # examples exit at different layers
    assert rows_seen[0] == 4 and rows_seen[1] < 4  # exited rows really left the batch
    assert (batched.tokens[batched.exit_layer == 1, 1:] == 0).all()
    for b in range(4):
        with torch.no_grad():
            single = run_adaptive(TorchSegments(model), alone(inputs, b), settings)
        assert single.exit_layer.item() == batched.exit_layer[b].item()
        assert (single.logits[0] - batched.logits[b]).abs().max() < 1e-5


def test_a_criterion_everyone_meets_exits_at_the_first_layer_and_one_nobody_meets_runs_all():
    model = four_layer_model("bert")
    inputs = batch_of("bert")
    with torch.no_grad():
        everyone = run_adaptive(TorchSegments(model), inputs, AdaptiveSettings(exit=ExitCriterion("confidence", 0.0)))
        nobody = run_adaptive(TorchSegments(model), inputs, AdaptiveSettings(exit=ExitCriterion("entropy", 0.0)))
        reference = model(**inputs).logits
    first_heads = first_exit_logits(model, inputs)
    assert everyone.exit_layer.tolist() == [1, 1, 1, 1]
    assert (everyone.logits - first_heads).abs().max() < 1e-5
    assert nobody.exit_layer.tolist() == [4, 4, 4, 4]
    assert (nobody.logits - reference).abs().max() < 1e-5


def test_min_exit_layer_holds_exits_back():
    model = four_layer_model("bert")
    settings = AdaptiveSettings(exit=ExitCriterion("confidence", 0.0), min_exit_layer=2)
    with torch.no_grad():
        out = run_adaptive(TorchSegments(model), batch_of("bert"), settings)
    assert out.exit_layer.tolist() == [3, 3, 3, 3]


def test_patience_counts_agreeing_exits_in_a_row():
    crit = ExitCriterion("patience", patience=2)
    state = PatienceState.start(3)
    logits = [torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]),  # predictions 0, 1, 0
              torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]]),  # 0, 0, 0
              torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])]  # 0, 0, 1
    decisions = []
    for lg in logits:
        leave, state = should_exit(crit, lg, state)
        decisions.append(leave.tolist())
    assert decisions == [[False, False, False], [False, False, False], [True, False, False]]


def test_normalised_entropy_bounds():
    assert normalised_entropy(torch.zeros(1, 3)).item() == pytest.approx(1.0)
    assert normalised_entropy(torch.tensor([[50.0, 0.0, 0.0]])).item() < 1e-6
    p = torch.tensor([0.7, 0.3])
    assert normalised_entropy(p.log()[None]).item() == pytest.approx(float(-(p * p.log()).sum() / math.log(2)))


def test_token_selection_keeps_cls_the_counts_and_the_order():
    hidden = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6, 1).expand(2, 6, 3).contiguous()
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    scores = torch.tensor([[0.0, 5.0, 1.0, 4.0, 3.0, 2.0], [0.0, 1.0, 2.0, 9.0, 9.0, 9.0]])
    scores = scores.masked_fill(mask == 0, float("-inf"))
    counts = keep_counts(mask.sum(-1), 0.5)  # ceil(0.5 * 6) = 3, ceil(0.5 * 3) = 2
    assert counts.tolist() == [3, 2]
    kept, new_mask, positions = select_tokens(hidden, mask, scores, counts)
    assert positions[0].tolist() == [0, 1, 3]  # [CLS] despite its low score, then the top two in order
    assert positions[1, :2].tolist() == [0, 2] and new_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert kept[0, :, 0].tolist() == [0.0, 1.0, 3.0]


def test_significance_sums_attention_received_over_heads_and_real_queries():
    probs = torch.zeros(1, 2, 3, 3)
    probs[0, :, :, 1] = 1.0  # every query attends to token 1 only
    mask = torch.tensor([[1, 1, 0]])
    sig = significance(probs, mask)
    assert sig[0, 1].item() == 4.0  # 2 heads x 2 real queries
    assert sig[0, 2].item() == float("-inf")


@pytest.mark.parametrize("arch", ARCHS)
def test_token_dropping_keeps_the_configured_counts_and_is_batch_independent(arch):
    model = four_layer_model(arch, exit_heads=False)
    inputs = batch_of(arch)
    settings = AdaptiveSettings(retention=(0.75, 0.5, 0.25))
    with torch.no_grad():
        out = run_adaptive(TorchSegments(model, capture_attention=True), inputs, settings)
    lengths = torch.tensor([12, 7, 3, 10])
    expected = [lengths] + [keep_counts(lengths, r) for r in (0.75, 0.5, 0.25)]
    assert out.tokens.tolist() == torch.stack(expected, 1).tolist()
    for b in range(4):
        with torch.no_grad():
            single = run_adaptive(TorchSegments(model, capture_attention=True), alone(inputs, b), settings)
        assert (single.logits[0] - out.logits[b]).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_segments_match_pytorch_with_exits_and_dropping(arch, tmp_path, tokenizer_dir):
    from transformers import BertTokenizerFast

    model = four_layer_model(arch)
    inputs = batch_of(arch)
    settings = AdaptiveSettings(exit=ExitCriterion("entropy", _threshold_splitting_layer_one(model, inputs)),
                                retention=(0.75, 0.5))
    bundle = ModelBundle(model=model, tokenizer=BertTokenizerFast.from_pretrained(tokenizer_dir), source="tiny",
                         adaptive=settings.to_dict())
    export = export_segments(bundle, tmp_path)
    assert export.max_abs_diff < 1e-4
    # layers 1-2 score tokens for the schedule (unfused attention); layers 3-4 are fused like the full graph
    assert OnnxSegments(tmp_path / ADAPTIVE_DIR).scoring_layers == (0, 1)
    assert export.fused_ops.get("Attention", 0) == 2
    with torch.no_grad():
        torch_out = run_adaptive(TorchSegments(model, capture_attention=True), inputs, settings)
    onnx_out = run_adaptive(OnnxSegments(tmp_path / ADAPTIVE_DIR), inputs, settings)
    assert onnx_out.exit_layer.tolist() == torch_out.exit_layer.tolist()
    assert onnx_out.tokens.tolist() == torch_out.tokens.tolist()
    assert (onnx_out.logits - torch_out.logits).abs().max() < 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_exit_only_segments_fuse_attention_in_every_layer_and_refuse_scoring(arch, tmp_path, tokenizer_dir):
    from transformers import BertTokenizerFast

    model = four_layer_model(arch)
    inputs = batch_of(arch)
    settings = AdaptiveSettings(exit=ExitCriterion("entropy", _threshold_splitting_layer_one(model, inputs)))
    bundle = ModelBundle(model=model, tokenizer=BertTokenizerFast.from_pretrained(tokenizer_dir), source="tiny",
                         adaptive=settings.to_dict())
    export = export_segments(bundle, tmp_path)
    assert export.fused_ops.get("Attention", 0) == 4, export.notes
    segments = OnnxSegments(tmp_path / ADAPTIVE_DIR)
    with torch.no_grad():
        torch_out = run_adaptive(TorchSegments(model), inputs, settings)
    onnx_out = run_adaptive(segments, inputs, settings)
    assert onnx_out.exit_layer.tolist() == torch_out.exit_layer.tolist()
    assert (onnx_out.logits - torch_out.logits).abs().max() < 1e-4
    with pytest.raises(SlimbertError, match="scores tokens only after layers none"):
        run_adaptive(segments, inputs, AdaptiveSettings(retention=(0.5,)))


def test_settings_and_configs_refuse_bad_values():
    with pytest.raises(ConfigError, match="patience must be >= 1"):
        ExitCriterion("patience", patience=0).validate()
    with pytest.raises(ConfigError, match="must not increase"):
        AdaptiveSettings(retention=(0.5, 0.8)).validate()
    with pytest.raises(ConfigError, match="4 layers"):
        AdaptiveSettings(retention=(0.9,) * 5).validate(4)
    from slimbert.methods.dynamic.early_exit import EarlyExitConfig
    from slimbert.methods.dynamic.token_dropping import TokenDroppingConfig

    with pytest.raises(ConfigError, match="above 1 would keep more tokens"):
        TokenDroppingConfig.from_dict({"retention": [1.5]})
    with pytest.raises(ConfigError, match="patience"):
        EarlyExitConfig.from_dict({"criterion": "patience", "patience": 0})
    with pytest.raises(ConfigError, match="criterion 'vote' is unknown"):
        EarlyExitConfig.from_dict({"criterion": "vote"})


def test_exit_criterion_on_a_model_without_exit_heads_is_refused():
    model = four_layer_model("bert", exit_heads=False)
    with pytest.raises(ConfigError, match="early exit needs exit heads"):
        run_adaptive(TorchSegments(model), batch_of("bert"), AdaptiveSettings(exit=ExitCriterion()))


def test_steps_that_change_layers_cannot_follow_early_exit(tiny_bert_dir):
    from slimbert.models.shape import shape_of_spec
    from slimbert.recipe import Recipe

    recipe = Recipe.from_dict({"name": "bad", "steps": [{"method": "early-exit"},
                                                        {"method": "prune-ffn", "fraction": 0.5}]})
    with pytest.raises(ConfigError, match="put it before early-exit"):
        recipe.check(shape_of_spec(tiny_bert_dir))
    Recipe.from_dict({"name": "ok", "steps": [{"method": "early-exit"}, {"method": "token-dropping"},
                                              {"method": "dynamic-int8"}]}).check(shape_of_spec(tiny_bert_dir))


@pytest.fixture(scope="module")
def task_data(tiny_glue):
    from slimbert.data.tasks import get_task
    from slimbert.training.settings import RunSettings
    from slimbert.training.task_data import TaskDataset

    return TaskDataset(get_task("sst2"), RunSettings(data_dir=str(tiny_glue), max_train_samples=64,
                                                     max_eval_samples=32))


@pytest.mark.parametrize("training", ["two-stage", "self-distill"])
def test_frozen_trainings_leave_the_backbone_and_classifier_untouched(training, tiny_bert_dir, task_data, tmp_path):
    from slimbert.models.loading import load_model

    bundle = load_model(tiny_bert_dir, task_data.task)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    out, _ = run_steps(bundle, [{"method": "early-exit", "training": training,
                                 "train": {"max_steps": 3, "batch_size": 8}}], task_data, tmp_path)
    after = out.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    heads = out.model.exit_heads
    fresh = ExitHeads(32, 2, 1, "mean").init_from(bundle.model.bert.pooler.dense, bundle.model.classifier)
    assert not torch.equal(heads.classifier[0].weight, fresh.classifier[0].weight)  # the heads did train
    assert all(p.requires_grad for p in out.model.parameters())  # the freeze was undone


@pytest.fixture(scope="module")
def adaptive_artifact(tiny_bert_dir, tiny_glue, tmp_path_factory):
    """A tiny bert compressed with early exit (joint training) and token dropping, exported."""
    from slimbert.api import compress
    from slimbert.training.settings import RunSettings

    work = tmp_path_factory.mktemp("adaptive")
    recipe = work / "r.yaml"
    recipe.write_text("name: t\nsteps:\n  - {method: early-exit, training: joint, threshold: 0.6, "
                      "train: {max_steps: 4, batch_size: 8}}\n  - {method: token-dropping, final_retention: 0.5}\n")
    out = work / "out"
    compress(str(tiny_bert_dir), "sst2", str(recipe), str(out), latency=False, log=lambda m: None,
             settings=RunSettings(data_dir=str(tiny_glue), max_train_samples=32, max_eval_samples=32))
    return out


def test_compressed_adaptive_artifact_gives_the_same_predictions_at_batch_1_and_32(adaptive_artifact, tiny_glue):
    from slimbert.data.tasks import get_task
    from slimbert.export.runtimes import open_session
    from slimbert.models.artifact import load_compressed
    from slimbert.training.settings import RunSettings
    from slimbert.training.task_data import TaskDataset

    out = adaptive_artifact
    bundle = load_compressed(out)
    assert bundle.adaptive["exit"]["threshold"] == 0.6 and bundle.adaptive["retention"] == [0.5]
    assert (out / ADAPTIVE_DIR / "segments.json").is_file() and (out / "model.onnx").is_file()
    dev = TaskDataset(get_task("sst2"), RunSettings(data_dir=str(tiny_glue))).eval_sets(bundle.tokenizer)
    dev = next(iter(dev.values()))
    predictions = {}
    for runtime in ("pytorch", "onnxruntime"):
        session = open_session(bundle, out, runtime)
        for batch_size in (1, 32):
            predictions[runtime, batch_size] = session.predict(dev, batch_size).argmax(-1)
    first = predictions["pytorch", 1]
    for key, value in predictions.items():
        assert np.array_equal(value, first), key
    with pytest.raises(Exception, match="OpenVINO conversion is not supported"):
        open_session(bundle, out, "openvino")


def test_bench_adaptive_measures_every_setting_on_both_runtimes(adaptive_artifact, tiny_glue, tmp_path):
    import json
    import subprocess
    import sys

    record_path = tmp_path / "adaptive.json"
    proc = subprocess.run([sys.executable, "-m", "slimbert.cli", "bench", "adaptive", "-m", str(adaptive_artifact),
                           "-t", "sst2", "--data-dir", str(tiny_glue), "--exit", "entropy:0.0", "--exit", "confidence:0.0", "--rounds", "1",
                           "--padded-examples", "8", "--out", str(record_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(record_path.read_text())
    assert record_path.with_suffix(".png").is_file()
    settings = {r["setting"] for r in record["rows"]}
    assert {"static", "entropy 0.6, retention 0.5", "entropy 0, retention 0.5", "confidence 0, retention 0.5"} <= settings
    natural = {(r["setting"], r["runtime"], r["batch"]): r for r in record["rows"] if r["lengths"] == "natural"}
    for (setting, runtime, batch), row in natural.items():
        assert row["ms_per_example"] > 0 and row["flops_per_example"] > 0
        # The same decisions on both runtimes and at both batch sizes.
        assert row["metrics"] == natural[(setting, "pytorch", 1)]["metrics"]
        assert row["agreement_with_smallest_batch"] == 1.0
    # Exiting everywhere at the first layer: fewer FLOPs than the static path; never exiting: all layers.
    assert natural[("confidence 0, retention 0.5", "pytorch", 1)]["avg_exit_layer"] == 1.0
    assert natural[("entropy 0, retention 0.5", "pytorch", 1)]["avg_exit_layer"] == 2.0
    assert (natural[("confidence 0, retention 0.5", "pytorch", 1)]["flops_per_example"]
            < natural[("static", "pytorch", 1)]["flops_per_example"])
    bad = subprocess.run([sys.executable, "-m", "slimbert.cli", "bench", "adaptive", "-m", str(adaptive_artifact),
                          "-t", "sst2", "--exit", "vote:1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "CRITERION" in bad.stderr


def test_bench_adaptive_refuses_a_schedule_the_onnx_export_does_not_score(adaptive_artifact, tiny_glue, tmp_path):
    import json
    import shutil

    from slimbert.bench.adaptive import run_adaptive_bench

    # an export whose layers score no tokens (an early-exit-only artifact's): a retention schedule needs layer 1's
    artifact = tmp_path / "artifact"
    shutil.copytree(adaptive_artifact, artifact)
    index_path = artifact / ADAPTIVE_DIR / "segments.json"
    index = json.loads(index_path.read_text())
    assert index["scoring_layers"] == [0]  # the recipe drops tokens after layer 1 of 2
    index_path.write_text(json.dumps(index | {"scoring_layers": []}))
    with pytest.raises(SlimbertError, match=r"scores tokens after layers none.*ask for layers \[1\]"):
        run_adaptive_bench(artifact, "sst2", exits=[], retentions=[(0.5,)], data_dir=str(tiny_glue),
                           log=lambda m: None)


def test_token_dropping_fine_tunes_on_the_shortened_path(tiny_bert_dir, task_data, tmp_path):
    from slimbert.models.loading import load_model

    bundle = load_model(tiny_bert_dir, task_data.task)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    out, ctx = run_steps(bundle, [{"method": "token-dropping", "final_retention": 0.5,
                                   "distill": {"temperature": 2.0, "logits_weight": 0.9, "hard_label_weight": 0.1},
                                   "train": {"max_steps": 3, "batch_size": 8}}], task_data, tmp_path)
    assert type(out.model).__name__ == "BertForSequenceClassification"  # the wrapper was baked away
    changed = [k for k, v in out.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("encoder.layer.0" in k for k in changed)  # gradients reached the encoder through the gathers
    assert out.adaptive["retention"] == [0.5]


def test_token_dropping_training_after_quantization_is_refused(tiny_bert_dir):
    from slimbert.models.shape import shape_of_spec
    from slimbert.recipe import Recipe

    recipe = Recipe.from_dict({"name": "bad", "steps": [{"method": "dynamic-int8"},
                                                        {"method": "token-dropping", "train": {"max_steps": 1}}]})
    with pytest.raises(ConfigError, match="put it before quantization"):
        recipe.check(shape_of_spec(tiny_bert_dir))
