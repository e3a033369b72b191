"""Distillation end to end on tiny models: students, projections, a run that lowers the loss,
student save -> reload -> ONNX, augmentation determinism, non-Transformer students."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from slimbert.data.loaders import Example
from slimbert.data.tasks import get_task
from slimbert.errors import ConfigError
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.measure.flops import flops_per_example
from slimbert.measure.size import count_parameters
from slimbert.methods.distillation.distill import DistillConfig, apply_distill
from slimbert.methods.distillation.distill.augment import AugmentConfig, Augmenter
from slimbert.methods.distillation.student import StudentConfig, apply_student
from slimbert.models.artifact import load_compressed, save_compressed
from slimbert.models.layer_selection import select_layers
from slimbert.models.loading import load_model
from slimbert.models.outputs import model_outputs
from slimbert.models.structure import config_value, layer_views
from slimbert.steps.context import StepContext
from slimbert.training.config import TrainConfig
from slimbert.training.distillation.loss_term import DistillationLoss
from slimbert.training.distillation.matches import LayerMatch
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


@pytest.fixture
def ctx(tiny_glue, tmp_path):
    settings = RunSettings(data_dir=str(tiny_glue), max_eval_samples=32)
    data = TaskDataset(get_task("sst2"), settings)
    return StepContext(data, settings, tmp_path / "work")


def _teacher(tiny_model_dirs, arch, ctx, train=True):
    bundle = load_model(tiny_model_dirs[arch], ctx.task)
    if train:  # a teacher that knows the task
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        ctx.train(bundle, TrainConfig(learning_rate=3e-3, epochs=4, batch_size=16, eval_every=1000), name="teacher")
    ctx.teacher = bundle.clone()
    return bundle


def test_select_layers():
    assert select_layers("every-other", 6, 3) == [0, 2, 4]
    assert select_layers("first", 6, 2) == [0, 1]
    assert select_layers("last", 6, 2) == [4, 5]
    assert select_layers("uniform", 6, 3) == [1, 3, 5]
    with pytest.raises(ConfigError, match="every-other selection keeps at most 3 of 6"):
        select_layers("every-other", 6, 4)


def test_student_from_teacher_layers_copies_weights(tiny_model_dirs, arch, ctx):
    teacher = _teacher(tiny_model_dirs, arch, ctx, train=False)
    ctx.work_dir.mkdir(parents=True)
    student = apply_student(teacher.clone(), StudentConfig(keep_layers=(1,)), ctx)
    assert config_value(student.model, "layers") == 1 and len(layer_views(student.model)) == 1
    t_q = layer_views(teacher.model)[1].query.weight
    assert torch.equal(layer_views(student.model)[0].query.weight, t_q)
    assert flops_per_example(student.model, 16) < flops_per_example(teacher.model, 16)
    with pytest.raises(ConfigError, match="out of range: the model has 2 layers"):
        apply_student(teacher.clone(), StudentConfig(keep_layers=(0, 2)), ctx)


def test_smaller_config_student(tiny_model_dirs, ctx):
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    ctx.work_dir.mkdir(parents=True)
    with pytest.raises(ConfigError, match="random_init: true"):
        StudentConfig.from_dict({"hidden_size": 16})
    student = apply_student(teacher.clone(), StudentConfig(num_layers=1, hidden_size=16, num_attention_heads=2,
                                                           intermediate_size=20, random_init=True), ctx)
    assert config_value(student.model, "hidden") == 16 and layer_views(student.model)[0].ffn_in.out_features == 20


@pytest.mark.parametrize("arch_name", ["bert", "distilbert"])
def test_distillation_lowers_the_loss_and_learns(tiny_model_dirs, ctx, arch_name):
    teacher = _teacher(tiny_model_dirs, arch_name, ctx)
    teacher_acc = ctx.data.evaluate(teacher.model, teacher.tokenizer)["accuracy"]
    student = apply_student(teacher.clone(), StudentConfig(keep_layers=(0,)), ctx)
    # Scramble the student so it has something to learn.
    torch.manual_seed(1)
    for p in student.model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    term = DistillationLoss(teacher.model, student.model, [LayerMatch(teacher=2, student=1, feature="hidden"),
                                                           LayerMatch(teacher=2, student=1, feature="value_relation")],
                            temperature=2.0)
    batch = next(iter(torch.utils.data.DataLoader(ctx.data.train_set(student.tokenizer), batch_size=32,
                                                  collate_fn=__import__("slimbert.data.encoding", fromlist=["x"]).PadCollator(0))))
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def loss_now():
        student.model.eval()
        with torch.no_grad():
            out = student.model(**inputs, output_hidden_states=True)
            return term(batch, out, student.model).item()

    before = loss_now()
    term.close()
    cfg = DistillConfig(matches=(LayerMatch(teacher=2, student=1, feature="hidden"),
                                 LayerMatch(teacher=2, student=1, feature="value_relation")),
                        train=TrainConfig(learning_rate=2e-3, epochs=3, batch_size=16, eval_every=1000))
    apply_distill(student, cfg, ctx)
    term = DistillationLoss(teacher.model, student.model, list(cfg.matches), temperature=2.0)
    after = loss_now()
    term.close()
    assert after < 0.7 * before
    assert ctx.data.evaluate(student.model, student.tokenizer)["accuracy"] >= teacher_acc - 0.15


def test_projection_inserted_when_widths_differ_and_not_exported(tiny_model_dirs, ctx, tmp_path):
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    ctx.work_dir.mkdir(parents=True)
    student = apply_student(teacher.clone(), StudentConfig(num_layers=1, hidden_size=16, num_attention_heads=4,
                                                           random_init=True), ctx)
    term = DistillationLoss(teacher.model, student.model, [LayerMatch(teacher=2, student=1), LayerMatch(feature="embedding"),
                                                           LayerMatch(teacher=2, student=1, feature="attention_relation")],
                            relation_heads=4)
    assert set(term.projections) == {"0", "1"} and term.projections["0"].weight.shape == (32, 16)
    term.close()
    cfg = DistillConfig(matches=(LayerMatch(teacher=2, student=1),), logits_loss="kl",
                        train=TrainConfig(max_steps=3, batch_size=16))
    apply_distill(student, cfg, ctx)
    names = [n for n, _ in student.model.named_parameters()]
    assert not any("projection" in n for n in names)
    assert sum(p.numel() for p in student.model.parameters()) == count_parameters(student.model)["total"]


def test_attention_match_needs_equal_heads(tiny_model_dirs, ctx):
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    ctx.work_dir.mkdir(parents=True)
    student = apply_student(teacher.clone(), StudentConfig(num_layers=1, num_attention_heads=2, random_init=True), ctx)
    cfg = DistillConfig(matches=(LayerMatch(teacher=2, student=1, feature="attention"),), logits_loss="none",
                        evaluate=False, train=TrainConfig(max_steps=1, batch_size=8))
    with pytest.raises(ValueError, match="attention_relation"):
        apply_distill(student, cfg, ctx)
    with pytest.raises(ConfigError, match="student layer 3 is out of range"):
        apply_distill(student, replace(cfg, matches=(LayerMatch(teacher=2, student=3),)), ctx)


@pytest.mark.parametrize("architecture", ["transformer", "bilstm", "cnn"])
def test_student_save_reload_onnx_round_trip(tiny_model_dirs, ctx, tmp_path, architecture):
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    ctx.work_dir.mkdir(parents=True)
    extra = {"keep_layers": (1,)} if architecture == "transformer" else {"lstm_hidden": 12, "cnn_filters": 7}
    extra = {k: v for k, v in extra.items() if architecture == "transformer" or k != "keep_layers"}
    student = apply_student(teacher.clone(), StudentConfig(architecture=architecture, **extra), ctx)
    save_compressed(student, tmp_path / "s")
    again = load_compressed(tmp_path / "s")
    batch = sample_batch(again)
    with torch.no_grad():
        ref = student.model(**batch).logits
        assert torch.allclose(again.model(**batch).logits, ref, atol=1e-6)
    exported = export_onnx(again, tmp_path / "s.onnx")
    assert np.abs(onnx_logits(onnx_session(exported.path), batch) - ref.numpy()).max() < 1e-4
    assert flops_per_example(again.model, 128) > 0
    # Padding never changes an example's prediction (the backward LSTM reads within the length).
    ids = batch["input_ids"][:1, :5]
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    feeds = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)},
             {"input_ids": padded, "attention_mask": (padded != 0).long()}]
    for f in feeds:
        if "token_type_ids" in batch:
            f["token_type_ids"] = torch.zeros_like(f["input_ids"])
    with torch.no_grad():
        assert torch.allclose(again.model(**feeds[0]).logits, again.model(**feeds[1]).logits, atol=1e-5)


def test_non_transformer_student_rejects_layer_matches(tiny_model_dirs, ctx):
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    ctx.work_dir.mkdir(parents=True)
    student = apply_student(teacher.clone(), StudentConfig(architecture="bilstm", lstm_hidden=8), ctx)
    with pytest.raises(ConfigError, match="layer matches need a Transformer student"):
        apply_distill(student, DistillConfig(preset="uniform", train=TrainConfig(max_steps=1)), ctx)


def test_bilstm_distillation_learns(tiny_model_dirs, ctx):
    teacher = _teacher(tiny_model_dirs, "bert", ctx)
    student = apply_student(teacher.clone(), StudentConfig(architecture="bilstm", lstm_hidden=32), ctx)
    apply_distill(student, DistillConfig(logits_loss="mse", train=TrainConfig(learning_rate=3e-3, epochs=4, batch_size=16,
                                                                               eval_every=1000)), ctx)
    assert ctx.data.evaluate(student.model, student.tokenizer)["accuracy"] > 0.8


def test_augmentation_is_deterministic_and_labelled(tiny_model_dirs, ctx, monkeypatch, tmp_path):
    monkeypatch.setenv("SLIMBERT_CACHE", str(tmp_path / "cache"))
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    examples = [Example(("the movie was really good and fun",), 1), Example(("a dull boring film",), 0)]
    cfg = AugmentConfig(copies=3, replace_prob=0.5, mask_prob=0.1, ngram_prob=0.5, neighbours=3, seed=7)
    a = Augmenter(cfg, teacher.tokenizer, teacher.model).generate(examples)
    b = Augmenter(cfg, teacher.tokenizer, teacher.model).generate(examples)
    c = Augmenter(replace(cfg, seed=8), teacher.tokenizer, teacher.model).generate(examples)
    assert a == b and a != c and len(a) == 6
    assert any(t != examples[i // 3].texts for i, t in enumerate(a))  # something changed
    from slimbert.methods.distillation.distill.augment import augment_examples

    labelled = augment_examples(examples, teacher.tokenizer, teacher.model, cfg, regression=False, log=lambda m: None)
    assert len(labelled) == 6 and {e.label for e in labelled} <= {0, 1}
    assert len(list((tmp_path / "cache" / "augment").glob("*.jsonl"))) == 1
    again = augment_examples(examples, teacher.tokenizer, teacher.model, cfg, regression=False, log=lambda m: None)
    assert again == labelled  # from the cache


def test_augmentation_sized_by_a_minimum_total(tiny_model_dirs, ctx, monkeypatch, tmp_path):
    """min_total_examples raises the copies of a small set only; the cache key uses the copies made."""
    cfg = AugmentConfig(copies=1, min_total_examples=10, neighbours=3)
    assert [cfg.copies_for(n) for n in (1, 2, 3, 5, 6, 10, 100)] == [9, 4, 3, 1, 1, 1, 1]
    assert AugmentConfig(copies=2).copies_for(3) == 2
    assert [replace(cfg, max_copies=4).copies_for(n) for n in (1, 2, 5)] == [4, 4, 1]
    with pytest.raises(ConfigError, match="min_total_examples"):
        AugmentConfig(min_total_examples=0).validate()
    with pytest.raises(ConfigError, match="max_copies"):
        AugmentConfig(copies=2, max_copies=1).validate()
    monkeypatch.setenv("SLIMBERT_CACHE", str(tmp_path / "cache"))
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    examples = [Example(("the movie was really good and fun",), 1), Example(("a dull boring film",), 0)]
    from slimbert.methods.distillation.distill.augment import augment_examples

    sized = augment_examples(examples, teacher.tokenizer, teacher.model, cfg, regression=False, log=lambda m: None)
    assert len(sized) == 8  # 2 originals x 4 copies: 10 in all
    four_copies = replace(cfg, copies=4, min_total_examples=None, max_copies=None)
    fixed = augment_examples(examples, teacher.tokenizer, teacher.model, four_copies, regression=False,
                             log=lambda m: None)
    assert fixed == sized and len(list((tmp_path / "cache" / "augment").glob("*.jsonl"))) == 1


def test_typed_outputs_view(tiny_model_dirs, arch, ctx):
    bundle = _teacher(tiny_model_dirs, arch, ctx, train=False)
    bundle.model.set_attn_implementation("eager")
    out = model_outputs(bundle.model, sample_batch(bundle), hidden=True, attentions=True, projections=True)
    assert len(out.hidden_states) == 3 and out.attentions[0].shape == (2, 4, 16, 16)
    assert len(out.projections["value"]) == 2 and out.projections["query"][0].shape == (2, 16, 32)
    assert out.num_layers == 2


def test_augmentation_with_a_masked_lm(tiny_model_dirs, ctx, tmp_path, tokenizer_dir):
    """TinyBERT's variant: candidates from a masked-LM's top predictions (here a tiny local MLM)."""
    from transformers import AutoTokenizer, BertForMaskedLM

    from helpers import tiny_config

    mlm_dir = tmp_path / "mlm"
    torch.manual_seed(0)
    BertForMaskedLM(tiny_config("bert")).save_pretrained(mlm_dir)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(mlm_dir)
    teacher = _teacher(tiny_model_dirs, "bert", ctx, train=False)
    examples = [Example(("the movie was really good and fun",), 1)]
    cfg = AugmentConfig(copies=4, replace_prob=0.6, mask_prob=0.0, ngram_prob=0.0, neighbours=3, mlm_model=str(mlm_dir))
    out = Augmenter(cfg, teacher.tokenizer, teacher.model).generate(examples)
    assert out == Augmenter(cfg, teacher.tokenizer, teacher.model).generate(examples)
    assert all("[MASK]" not in t[0] for t in out)  # every chosen position was filled by the MLM
    assert any(t != examples[0].texts for t in out)
