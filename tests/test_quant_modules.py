"""Quantized module kinds: packed storage round trips, static int8 arithmetic, fake-quant wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimbert.methods.quantization.common.embeddings import embedding_from_codes
from slimbert.methods.quantization.common.fake_quant import FakeQuantEmbedding, FakeQuantLinear, UniformWeightQuantizer
from slimbert.methods.quantization.common.int8_modules import Int8Embedding, Int8StaticLinear
from slimbert.methods.quantization.common.packed import PackedEmbedding, PackedLinear
from slimbert.methods.quantization.common.packing import packed_size
from slimbert.methods.quantization.common.uniform import dequantize_groups, quantize_groups
from slimbert.methods.quantization.int4_weight_only import quantize_int4_blocks
from slimbert.models.module_kinds import build_module, describe_module


def _rebuilt(module: nn.Module) -> nn.Module:
    """What loading an artifact does: an empty module from the recorded kind + spec, then the state dict."""
    described = describe_module(module)
    empty = build_module(described["kind"], described["spec"])
    empty.load_state_dict(module.state_dict(), strict=True)
    return empty


@pytest.mark.parametrize("bits, row_block, col_block", [(2, None, None), (3, 8, None), (4, 1, 16), (8, 1, None)])
def test_packed_linear_uniform_round_trip(bits, row_block, col_block):
    linear = nn.Linear(37, 20)
    codes, scales = quantize_groups(linear.weight, bits, row_block, col_block)
    packed = PackedLinear.empty_like(linear, bits, "uniform", row_block, col_block)
    packed.set_uniform(codes, scales)
    assert packed.codes.dtype == torch.uint8 and packed.codes.numel() == packed_size(20 * 37, bits)
    expected = dequantize_groups(codes, scales, row_block, col_block)
    assert torch.equal(packed.dense(), expected)
    x = torch.randn(3, 5, 37)
    assert torch.allclose(packed(x), x @ expected.T + linear.bias, atol=1e-5)
    again = _rebuilt(packed)
    assert torch.equal(again(x), packed(x))
    assert torch.equal(again.to_float().weight, expected)
    assert again.logical_params() == 20 * 37 + 20


def test_packed_linear_codebook_with_outliers():
    linear = nn.Linear(16, 8)
    indices = torch.randint(0, 8, (8, 16))
    codebook = torch.linspace(-0.3, 0.3, 8)
    positions = torch.tensor([3, 77])
    values = torch.tensor([5.0, -4.0])
    packed = PackedLinear.empty_like(linear, 3, "codebook", outliers=2)
    packed.set_codebook(indices, codebook, positions, values)
    dense = codebook[indices]
    dense.view(-1)[positions] = values
    assert torch.equal(_rebuilt(packed).dense(), dense)
    stored = sum(b.numel() * b.element_size() for name, b in packed.named_buffers() if name != "bias")
    assert stored == packed_size(128, 3) + 8 * 4 + 2 * (4 + 4)  # 3-bit codes, codebook, (index, value) pairs


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_packed_embedding_round_trip(bits):
    emb = nn.Embedding(99, 32, padding_idx=0)
    codes, scales = quantize_groups(emb.weight, bits, row_block=1)
    table = embedding_from_codes(emb, codes, scales, bits)
    assert isinstance(table, PackedEmbedding)
    ids = torch.tensor([[1, 5, 98], [0, 2, 3]])
    expected = dequantize_groups(codes, scales, 1)[ids]
    assert torch.equal(table(ids), expected) and torch.equal(_rebuilt(table)(ids), expected)
    assert isinstance(embedding_from_codes(emb, *quantize_groups(emb.weight, 8, 1), 8), Int8Embedding)


@pytest.mark.parametrize("zero_point", [128, 97])
def test_int8_static_linear_matches_the_quantized_formula(zero_point):
    torch.manual_seed(0)
    linear = nn.Linear(32, 37)
    scale = 0.02
    q = Int8StaticLinear.from_float_static(linear, scale, zero_point)
    x = torch.randn(2, 7, 32)
    x_q = (torch.clamp(torch.round(x / scale) + zero_point, 0, 255) - zero_point) * scale  # what ORT's Q/DQ pair does
    expected = x_q @ q.dequantized_weight().T + linear.bias
    assert torch.allclose(q(x), expected, atol=1e-5)
    assert torch.equal(_rebuilt(q)(x), q(x))
    assert q.weight_int8.dtype == torch.int8


def test_int4_grid_is_onnx_runtimes():
    """ONNX Runtime's MatMulNBits grid: largest-magnitude weight / -8 per block, codes in [-8, 7]."""
    w = torch.randn(5, 64)
    codes, scales = quantize_int4_blocks(w, 32)
    assert scales.shape == (5, 2) and int(codes.min()) >= -8 and int(codes.max()) <= 7
    for r in range(5):
        for b in range(2):
            block = w[r, 32 * b:32 * (b + 1)]
            assert scales[r, b] == block[block.abs().argmax()] / -8
    back = dequantize_groups(codes, scales, 1, 32)
    assert torch.equal(quantize_int4_blocks(back, 32)[0], codes)  # re-quantizing the decoded weights is exact


def test_fake_quant_embedding_quantizes_only_looked_up_rows_identically():
    emb = nn.Embedding(50, 16)
    quantizer = UniformWeightQuantizer(3, row_block=1)
    wrapper = FakeQuantEmbedding(emb, quantizer)
    ids = torch.tensor([[4, 9, 4], [0, 49, 1]])
    codes, scales = quantizer.quantize(emb.weight)
    assert torch.allclose(wrapper(ids), dequantize_groups(codes, scales, 1)[ids])
    with pytest.raises(ValueError, match="one scale per row"):
        FakeQuantEmbedding(emb, UniformWeightQuantizer(3, row_block=None))


def test_fake_quant_linear_trains_latent_weights_and_tracks_input_range():
    linear = nn.Linear(8, 4)
    wrapper = FakeQuantLinear(linear, UniformWeightQuantizer(2, row_block=1), act_bits=8, momentum=0.5)
    x = torch.randn(10, 8)
    wrapper(x).pow(2).sum().backward()
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert float(wrapper.act_range.amax) == pytest.approx(float(x.abs().max()))
    assert wrapper.in_features == 8 and wrapper.out_features == 4
