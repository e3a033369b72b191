"""Dynamic int8: real int8 storage and kernels, close outputs, export to ONNX Runtime int8, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimbert.data.tasks import get_task
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.measure.size import count_parameters, weight_bytes
from slimbert.methods.quantization.common.int8 import quantize_rows
from slimbert.methods.quantization.common.int8_modules import Int8DynamicLinear, Int8Embedding
from slimbert.methods.quantization.dynamic_int8 import DynamicInt8Config, apply_dynamic_int8
from slimbert.models.artifact import load_compressed, save_compressed
from slimbert.models.loading import load_model
from slimbert.models.structure import layer_views
from slimbert.steps.context import StepContext
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def test_quantize_rows_error_bound():
    w = torch.randn(37, 32)
    codes, scales = quantize_rows(w)
    assert codes.dtype == torch.int8 and scales.shape == (37,)
    err = (codes.float() * scales[:, None] - w).abs()
    assert (err <= scales[:, None] / 2 + 1e-7).all()  # round-to-nearest: at most half a step
    codes_t, scales_t = quantize_rows(w, per_channel=False)
    assert torch.all(scales_t == scales_t[0]) and scales_t[0] == pytest.approx(w.abs().max().item() / 127)


def test_int8_linear_is_close_and_int8():
    torch.manual_seed(0)
    lin = nn.Linear(32, 37)
    q = Int8DynamicLinear.from_float(lin)
    assert q.weight_int8.dtype == torch.int8
    x = torch.randn(3, 5, 32)
    ref, out = lin(x), q(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()
    assert torch.allclose(q.to_float()(x), x @ q.dequantized_weight().T + q.bias, atol=1e-5)


def test_int8_embedding():
    emb = nn.Embedding(99, 32, padding_idx=0)
    q = Int8Embedding.from_float(emb)
    ids = torch.tensor([[1, 5, 98]])
    assert (q(ids) - emb(ids)).abs().max() < 0.01 * emb.weight.abs().max()
    assert torch.allclose(q.to_float()(ids), q(ids))


@pytest.fixture
def step_ctx(tiny_glue, tmp_path):
    settings = RunSettings(data_dir=str(tiny_glue))
    return StepContext(TaskDataset(get_task("sst2"), settings), settings, tmp_path / "work")


@pytest.mark.parametrize("embeddings", [False, True])
def test_apply_quantizes_every_encoder_linear(tiny_model_dirs, arch, step_ctx, embeddings, tmp_path):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    reference = bundle.clone()
    fp32_bytes = weight_bytes(bundle.model)
    q = apply_dynamic_int8(bundle, DynamicInt8Config(quantize_embeddings=embeddings), step_ctx)
    for view in layer_views(q.model):
        assert all(isinstance(m, Int8DynamicLinear) for m in view.linears().values())
    assert weight_bytes(q.model)["no_embeddings"] < 0.5 * fp32_bytes["no_embeddings"]
    assert (weight_bytes(q.model)["total"] < 0.5 * fp32_bytes["total"]) == embeddings
    assert count_parameters(q.model)["total"] == count_parameters(reference.model)["total"]
    batch = sample_batch(q)
    with torch.no_grad():
        ref, out = reference.model(**batch).logits, q.model(**batch).logits
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3

    # Save -> load round trip: same modules, identical outputs, smaller file.
    save_compressed(q, tmp_path / "q")
    save_compressed(reference, tmp_path / "ref")
    again = load_compressed(tmp_path / "q")
    assert isinstance(layer_views(again.model)[0].query, Int8DynamicLinear)
    with torch.no_grad():
        assert torch.equal(again.model(**batch).logits, out)
    assert (tmp_path / "q" / "model.safetensors").stat().st_size < (tmp_path / "ref" / "model.safetensors").stat().st_size


def test_onnx_int8_export_close_to_fp32(tiny_model_dirs, arch, step_ctx, tmp_path):
    bundle = load_model(tiny_model_dirs[arch], get_task("sst2"))
    reference = bundle.clone()
    q = apply_dynamic_int8(bundle, DynamicInt8Config(), step_ctx)
    exported = export_onnx(q, tmp_path / "q.onnx")
    assert exported.transforms == ["ort-dynamic-int8"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}, ops  # real int8 kernels in the graph
    batch = sample_batch(q)
    with torch.no_grad():
        ref = reference.model(**batch).logits.numpy()
    got = onnx_logits(onnx_session(tmp_path / "q.onnx"), batch)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max() + 1e-3


def test_float_export_is_fused_and_exact(tiny_bert_dir, tmp_path):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    exported = export_onnx(bundle, tmp_path / "f.onnx")
    assert exported.fused_ops.get("Attention") == 2 and exported.max_abs_diff < 1e-4
    assert Path(exported.path).stat().st_size > 0
