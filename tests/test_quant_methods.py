"""Quantization methods end to end on tiny models: apply, save -> load, ONNX Runtime, claims, gate, bad configs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
import torch

from slimbert.data.tasks import get_task
from slimbert.errors import ConfigError, SlimbertError
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.methods.quantization.common.accuracy_gate import LayerFallback, enforce_accuracy
from slimbert.methods.quantization.common.int8_modules import Int8StaticLinear
from slimbert.methods.quantization.common.packed import PackedLinear
from slimbert.models.artifact import load_compressed, save_compressed
from slimbert.models.loading import load_model
from slimbert.models.structure import layer_views, set_module
from slimbert.recipe import Recipe
from slimbert.steps.context import StepContext
from slimbert.steps.gate import StepGate
from slimbert.steps.registry import get_method
from slimbert.training.config import TrainConfig
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


@dataclass
class CapturingContext(StepContext):
    """A step context that also records the model's logits on ``probe`` right after training
    (the fake-quantized model, before the method bakes it)."""

    probe: dict | None = None
    trained_logits: list = field(default_factory=list)

    def train(self, bundle, cfg, **kwargs):
        result = super().train(bundle, cfg, **kwargs)
        with torch.no_grad():
            self.trained_logits.append(bundle.model.eval()(**self.probe).logits.clone())
        return result


@pytest.fixture(scope="module")
def trained_bert(tiny_bert_dir, tiny_glue, tmp_path_factory):
    """The tiny BERT fine-tuned on the synthetic SST-2 (it learns it), saved as a plain HF directory."""
    settings = RunSettings(data_dir=str(tiny_glue))
    ctx = StepContext(TaskDataset(get_task("sst2"), settings), settings, tmp_path_factory.mktemp("finetune"))
    bundle = load_model(tiny_bert_dir, ctx.task)
    ctx.train(bundle, TrainConfig(learning_rate=3e-3, epochs=4, batch_size=16, eval_every=1000), name="teacher")
    out = tmp_path_factory.mktemp("trained-bert")
    bundle.model.save_pretrained(out)
    bundle.tokenizer.save_pretrained(out)
    return out


def _context(tiny_glue, tmp_path, teacher, max_steps: int = 4, **settings) -> CapturingContext:
    run = RunSettings(data_dir=str(tiny_glue), max_steps=max_steps, **settings)
    ctx = CapturingContext(TaskDataset(get_task("sst2"), run), run, tmp_path / "work", teacher=teacher.clone())
    ctx.probe = sample_batch(teacher, batch=4, seq=12)
    return ctx


def _logits(bundle, batch) -> np.ndarray:
    with torch.no_grad():
        return bundle.model.eval()(**batch).logits.numpy()


# (method, config, tolerance of the quantized logits vs fp32 as a fraction of the logit range, int8 on ORT)
METHODS = [
    ("static-int8", {"calibration_samples": 64}, 0.1, True),
    ("static-int8", {"calibration": "percentile", "embedding_bits": 8}, 0.1, True),
    ("qat-int8", {}, 0.1, True),
    ("qbert", {"bits": 4, "embedding_bits": 4}, 0.5, True),
    ("ternary", {"mode": "twn"}, None, True),
    ("ternary", {"mode": "lat", "embedding_bits": 2, "onnx_int8": False}, None, False),
    ("gobo", {"embedding_bits": 3}, 0.5, False),
    ("int4-weight-only", {}, 0.2, False),
]


@pytest.mark.parametrize("name, config, tolerance, int8_onnx", METHODS,
                         ids=[f"{m}-{i}" for i, (m, *_rest) in enumerate(METHODS)])
def test_method_save_load_onnx(trained_bert, tiny_glue, tmp_path, name, config, tolerance, int8_onnx):
    teacher = load_model(trained_bert, get_task("sst2"))
    ctx = _context(tiny_glue, tmp_path, teacher)
    method = get_method(name)
    quantized = method.apply(teacher.clone(), method.config_cls.from_dict(config), ctx)
    batch = ctx.probe
    reference, ours = _logits(teacher, batch), _logits(quantized, batch)
    spread = np.abs(reference).max()
    assert spread > 0.5  # a trained model: logits large enough for the comparisons to mean something
    if tolerance is not None:  # changed but close
        assert 0 < np.abs(ours - reference).max() < tolerance * spread
    assert {c.gain for c in ctx.claims} == {"size", "speed"} and {c.runtime for c in ctx.claims} >= {"disk", "pytorch"}

    # Save -> load: the same modules, bit-identical outputs, a file smaller than the fp32 model's.
    save_compressed(quantized, tmp_path / "q")
    save_compressed(teacher, tmp_path / "fp32")
    again = load_compressed(tmp_path / "q")
    assert [type(m) for m in again.model.modules()] == [type(m) for m in quantized.model.modules()]
    assert np.array_equal(_logits(again, batch), ours)
    size = (tmp_path / "q" / "model.safetensors").stat().st_size
    assert size < 0.75 * (tmp_path / "fp32" / "model.safetensors").stat().st_size

    # The reloaded artifact exports to ONNX Runtime by itself (its transforms need no data).
    exported = export_onnx(again, tmp_path / "q.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert ("QuantizeLinear" in ops) == int8_onnx
    got = onnx_logits(onnx_session(tmp_path / "q.onnx"), batch)
    assert np.abs(got - ours).max() < (0.05 if int8_onnx else 1e-3) * spread, exported.transforms


def test_qat_int8_onnx_matches_the_fake_quant_model(trained_bert, tiny_glue, tmp_path):
    """The baked int8 model (PyTorch and ONNX Runtime) computes what QAT simulated."""
    teacher = load_model(trained_bert, get_task("sst2"))
    ctx = _context(tiny_glue, tmp_path, teacher, max_steps=6)
    method = get_method("qat-int8")
    quantized = method.apply(teacher.clone(), method.config_cls(), ctx)
    fake_quant = ctx.trained_logits[-1].numpy()
    spread = np.abs(fake_quant).max()
    views = layer_views(quantized.model)
    assert all(isinstance(m, Int8StaticLinear) for v in views for m in v.linears().values())
    assert all(int(v.query.input_zero_point) == 128 for v in views)  # Q8BERT's symmetric activation grid
    save_compressed(quantized, tmp_path / "qat")
    again = load_compressed(tmp_path / "qat")
    assert torch.equal(layer_views(again.model)[1].ffn_out.input_scale, views[1].ffn_out.input_scale)
    assert np.abs(_logits(again, ctx.probe) - fake_quant).max() < 0.02 * spread
    export_onnx(again, tmp_path / "qat.onnx")
    got = onnx_logits(onnx_session(tmp_path / "qat.onnx"), ctx.probe)
    assert np.abs(got - fake_quant).max() < 0.05 * spread


def test_static_int8_onnx_on_every_architecture(tiny_model_dirs, arch, tiny_glue, tmp_path):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    head = bundle.model.get_submodule(bundle.arch.classifier[-1])
    output = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    output.weight.data.mul_(50)  # larger logits, so that closeness is tested at a useful scale
    ctx = _context(tiny_glue, tmp_path, bundle)
    method = get_method("static-int8")
    quantized = method.apply(bundle.clone(), method.config_cls(), ctx)
    ours, reference = _logits(quantized, ctx.probe), _logits(bundle, ctx.probe)
    exported = export_onnx(quantized, tmp_path / "s.onnx")
    graph = onnx.load(str(tmp_path / "s.onnx")).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) == 4 * len(layer_views(bundle.model))  # q/k/v share one
    got = onnx_logits(onnx_session(tmp_path / "s.onnx"), ctx.probe)
    spread = np.abs(reference).max()
    assert np.abs(got - ours).max() < 0.05 * spread and np.abs(got - reference).max() < 0.1 * spread
    assert any("fusions skipped" in n for n in exported.notes)


def test_qbert_mixed_precision_from_the_hessian(trained_bert, tiny_glue, tmp_path):
    teacher = load_model(trained_bert, get_task("sst2"))
    ctx = _context(tiny_glue, tmp_path, teacher, max_steps=2)
    method = get_method("qbert")
    cfg = method.config_cls.from_dict({"bit_choices": [2, 4, 8], "average_bits": 3.0, "power_iterations": 10})
    quantized = method.apply(teacher.clone(), cfg, ctx)
    bits = [{m.bits for m in v.linears().values()} for v in layer_views(quantized.model)]
    assert all(len(b) == 1 and b <= {2, 4, 8} for b in bits)  # one width per layer
    assert sum(b.pop() for b in bits) / len(bits) <= 3.0
    assert any("Hessian sensitivity" in n for n in ctx.notes)
    query = layer_views(quantized.model)[0].query
    assert isinstance(query, PackedLinear) and query.scales.shape == (4, 1)  # one scale per head


@pytest.mark.parametrize("name, config, fragment", [
    ("qbert", {"bits": 9}, "bits must be an integer in [1, 8], got 9"),
    ("qbert", {"bit_choices": [2, 0]}, "every entry of bit_choices must be an integer in [1, 8], got 0"),
    ("gobo", {"bits": 0}, "bits must be an integer in [1, 8], got 0"),
    ("ternary", {"embedding_bits": 16}, "embedding_bits must be an integer in [1, 8], got 16"),
    ("static-int8", {"calibration_samples": 0}, "calibration_samples must be >= 1"),
    ("qat-int8", {"max_metric_drop": -1}, "max_metric_drop must be in [0, inf]"),
    ("dynamic-int8", {"max_metric_drop": 1, "on_exceed": "fallback"}, "has no fallback for its accuracy gate"),
    ("qat-int8", {"on_exceed": "fallback"}, "which needs max_metric_drop"),
    ("int4-weight-only", {"block_size": 48}, "block_size must be one of 16, 32, 64, 128, 256"),
])
def test_bad_configs_are_explained(name, config, fragment):
    with pytest.raises(ConfigError) as exc:
        Recipe.from_dict({"steps": [{"method": name, **config}]})
    assert fragment in str(exc.value)


def test_empty_calibration_set_is_a_clear_error(tiny_bert_dir, tiny_glue, tmp_path):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    settings = RunSettings(data_dir=str(tiny_glue), max_train_samples=0)  # (an empty train.tsv fails at loading)
    ctx = StepContext(TaskDataset(get_task("sst2"), settings), settings, tmp_path / "work")
    method = get_method("static-int8")
    with pytest.raises(ConfigError, match="the calibration set is empty"):
        method.apply(bundle, method.config_cls(), ctx)


def _zeroed(linear):
    dead = torch.nn.Linear(linear.in_features, linear.out_features)
    torch.nn.init.zeros_(dead.weight)
    torch.nn.init.zeros_(dead.bias)
    return dead


def _broken_layers(bundle) -> LayerFallback:
    """Both layers' linears zeroed (a ruinous 'quantization'), with the originals as fallback."""
    quantized, fallback = {}, {}
    for view in layer_views(bundle.model):
        originals = {view.module_path(r): m for r, m in view.linears().items()}
        fallback[view.index] = originals
        quantized[view.index] = {p: _zeroed(m) for p, m in originals.items()}
        for p, m in quantized[view.index].items():
            set_module(bundle.model, p, m)
    return LayerFallback(quantized, fallback)


@pytest.mark.parametrize("runtime", ["pytorch", "onnxruntime"])
def test_accuracy_gate_fails_or_falls_back_per_layer(trained_bert, tiny_glue, tmp_path, runtime):
    teacher = load_model(trained_bert, get_task("sst2"))
    ctx = _context(tiny_glue, tmp_path, teacher)
    ctx.gate_runtime = runtime
    baseline = ctx.input_evaluation(runtime).metrics["accuracy"]
    assert baseline > 0.9

    bundle = teacher.clone()
    layers = _broken_layers(bundle)
    ctx.gate = StepGate(max_metric_drop=1.0)
    with pytest.raises(SlimbertError, match=f"accuracy gate failed on {runtime}: accuracy .* on_exceed: fallback"):
        enforce_accuracy(bundle, ctx, "demo", layers)

    ctx.gate = StepGate(max_metric_drop=1.0, on_exceed="fallback")
    restored = enforce_accuracy(bundle, ctx, "demo", layers)
    assert restored  # at least one layer had to go back
    accuracy = ctx.data.evaluate(bundle.model, bundle.tokenizer)["accuracy"]
    assert (baseline - accuracy) * 100 <= 1.0 + 1e-9
    assert ctx.gate_outcome.passed and ctx.gate_outcome.fallback == f"layers {restored} at higher precision"
    assert any("fell back to higher precision" in n for n in ctx.notes)
    ctx.gate = None
    assert enforce_accuracy(bundle, ctx, "demo", layers) == []  # no gate, no check


def test_gate_in_a_method_reports_and_keeps_fp32_layers_out_of_the_onnx_graph(trained_bert, tiny_glue, tmp_path):
    teacher = load_model(trained_bert, get_task("sst2"))
    ctx = _context(tiny_glue, tmp_path, teacher)
    ctx.gate = StepGate(max_metric_drop=50.0, on_exceed="fallback")
    method = get_method("static-int8")
    quantized = method.apply(teacher.clone(), method.config_cls(), ctx)
    assert any("accuracy gate passed on onnxruntime" in n for n in ctx.notes)
    assert len(quantized.onnx_transforms[-1]["activations"]) == 6 * len(layer_views(quantized.model))


def test_shipped_static_int8_recipe_compresses_a_bert(trained_bert, tiny_glue, tmp_path):
    from pathlib import Path

    from slimbert.api import compress

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "static-int8.yaml"
    result = compress(str(trained_bert), "sst2", recipe, tmp_path / "out", settings=RunSettings(data_dir=str(tiny_glue)),
                      latency=False, log=lambda _: None)
    report = result.report.to_dict()
    base, comp = report["baseline"], report["compressed"]
    assert comp["metrics"]["accuracy"] >= base["metrics"]["accuracy"] - 0.01  # within the recipe's 1-point gate
    assert comp["metrics_onnx"]["accuracy"] >= base["metrics"]["accuracy"] - 0.02
    assert report["ratios"]["size_no_embeddings"] > 2.5  # int8 encoder on disk
    assert all(c["realized"] for c in report["claims"])
    assert any("accuracy gate passed" in n for n in report["notes"])
    assert isinstance(layer_views(result.bundle.model)[0].ffn_in, Int8StaticLinear)
