"""Quantization math: round trips and error bounds per bit width, groups, packing, ternary,
straight-through gradients, moving-average ranges, Hessian power iteration, bit budgets, GOBO."""

from __future__ import annotations

import pytest
import torch

from slimbert.errors import ConfigError
from slimbert.methods.quantization.common.calibration import ActivationQuant, RangeObserver
from slimbert.methods.quantization.common.fake_quant import (
    EmaAbsMax,
    UniformWeightQuantizer,
    fake_quantize_activation,
    round_ste,
)
from slimbert.methods.quantization.common.packing import pack_codes, packed_size, unpack_codes
from slimbert.methods.quantization.common.uniform import (
    check_bits,
    dequantize_groups,
    group_reduce,
    qmax,
    quantize_groups,
)
from slimbert.methods.quantization.gobo.clustering import gobo_encode
from slimbert.methods.quantization.qbert.hessian import assign_bits, hessian_vector_product, sensitivity, top_eigenvalue
from slimbert.methods.quantization.ternary.quantizer import TernaryWeightQuantizer
from slimbert.methods.quantization.ternary.ternarize import ternarize_lat, ternarize_twn


@pytest.mark.parametrize("bits", range(2, 9))
def test_uniform_round_trip_error_bound(bits):
    w = torch.randn(37, 32)
    codes, scales = quantize_groups(w, bits, row_block=1)
    assert codes.dtype == torch.int8 and scales.shape == (37, 1)
    assert int(codes.abs().max()) == qmax(bits)  # each row's largest weight lands on the edge of the grid
    back = dequantize_groups(codes, scales, 1)
    assert ((back - w).abs() <= scales / 2 + 1e-6).all()  # round to nearest: at most half a step
    again, _ = quantize_groups(back, bits, row_block=1)
    assert torch.equal(again, codes)  # quantized weights are fixed points


def test_one_bit_is_sign_times_mean_magnitude():
    w = torch.randn(8, 16)
    codes, scales = quantize_groups(w, 1, row_block=1)
    assert set(codes.unique().tolist()) <= {-1, 1}
    assert torch.allclose(scales.reshape(-1), w.abs().mean(dim=1))


def test_error_shrinks_with_bits():
    w = torch.randn(64, 64)
    errors = [(dequantize_groups(*quantize_groups(w, b, 1), 1) - w).pow(2).mean() for b in range(2, 9)]
    assert all(a > b for a, b in zip(errors, errors[1:]))


def test_group_blocks():
    w = torch.arange(10 * 7, dtype=torch.float32).reshape(10, 7)
    amax = group_reduce(w, 4, 3)  # blocks of 4 rows x 3 columns; the last blocks are shorter
    assert amax.shape == (3, 3)
    assert amax[0, 0] == w[:4, :3].max() and amax[2, 2] == w[8:, 6:].max()
    codes, scales = quantize_groups(w - 30, 4, None, 3)  # whole rows, blocks of 3 columns
    assert scales.shape == (1, 3)
    assert torch.allclose(dequantize_groups(codes, scales, None, 3), w - 30, atol=float(scales.max()) / 2 + 1e-5)


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5, True])
def test_bits_outside_1_to_8_are_config_errors(bits):
    with pytest.raises(ConfigError, match=r"bits must be an integer in \[1, 8\]"):
        check_bits(bits)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_packing_round_trip(bits, n):
    codes = torch.randint(0, 2 ** bits, (n,))
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(n, bits) == (n * bits + 7) // 8
    assert torch.equal(unpack_codes(packed, bits, n), codes)


def test_packing_is_a_little_endian_bit_stream_and_checks_ranges():
    assert pack_codes(torch.tensor([1, 2]), 3).tolist() == [0b010001]  # 001 then 010, low bits first
    # 5 | 3 << 3 | 6 << 6 = 0b1_10_011_101: code 6 straddles the two bytes
    assert pack_codes(torch.tensor([5, 3, 6]), 3).tolist() == [0b10011101, 0b1]
    with pytest.raises(ValueError, match="codes must lie in"):
        pack_codes(torch.tensor([8]), 3)


def test_twn_ternarization():
    w = torch.randn(16, 32)
    codes, alpha = ternarize_twn(w)
    assert set(codes.unique().tolist()) <= {-1, 0, 1} and alpha.shape == (1, 1)
    delta = 0.7 * w.abs().mean()
    assert torch.equal(codes != 0, w.abs() > delta)
    assert torch.isclose(alpha[0, 0], w.abs()[w.abs() > delta].mean())
    codes_rows, alpha_rows = ternarize_twn(w, row_block=1)
    assert alpha_rows.shape == (16, 1)


def test_lat_weights_the_error_by_curvature():
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    d = torch.rand(8, 64) + 0.1
    codes, alpha = ternarize_lat(w, d)
    twn_codes, twn_alpha = ternarize_twn(w)

    def weighted_error(c, a):
        return (d * (w - a * c.float()) ** 2).sum()

    assert weighted_error(codes, alpha) <= weighted_error(twn_codes, twn_alpha) + 1e-6
    assert torch.equal(codes != 0, w.abs() > alpha / 2)  # the LAT threshold is alpha / 2
    # With a uniform curvature LAT is the usual least-squares alternation: alpha = mean kept |w|.
    codes_u, alpha_u = ternarize_lat(w, torch.ones_like(w))
    assert torch.isclose(alpha_u[0, 0], w.abs()[codes_u != 0].mean())


def test_round_ste_gradient_is_identity():
    x = torch.tensor([0.2, 1.7, -2.4], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0.0, 2.0, -2.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_activation_fake_quant_clipped_ste():
    x = torch.tensor([-3.0, -0.5, 0.26, 0.9, 2.0], requires_grad=True)
    y = fake_quantize_activation(x, torch.tensor(1.0), bits=8)
    step = 1 / 127
    assert torch.allclose(y[1:4], torch.round(x[1:4] / step) * step)
    assert y[0] == -1.0 and y[4] == 1.0  # clipped to the range
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # no gradient where clipped


@pytest.mark.parametrize("quantizer", [UniformWeightQuantizer(3, 1), TernaryWeightQuantizer(mode="twn")])
def test_weight_fake_quant_forward_quantized_backward_identity(quantizer):
    w = torch.randn(6, 10, requires_grad=True)
    out = quantizer(w)
    codes, scales = quantizer.quantize(w)
    assert torch.allclose(out, dequantize_groups(codes, scales, quantizer.row_block, quantizer.col_block))
    g = torch.randn(6, 10)
    out.backward(g)
    assert torch.equal(w.grad, g)


def test_ema_range():
    ema = EmaAbsMax(momentum=0.5)
    ema(torch.tensor([1.0, -4.0]))  # first batch sets the range
    assert float(ema.amax) == 4.0
    ema(torch.tensor([2.0]))
    assert float(ema.amax) == 3.0  # 0.5 * 4 + 0.5 * 2
    ema.eval()
    ema(torch.tensor([100.0]))
    assert float(ema.amax) == 3.0  # evaluation does not move the range


def test_activation_quant_parameters():
    q = ActivationQuant.from_range(-1.0, 3.0)
    assert q.scale == pytest.approx(4 / 255) and q.zero_point == round(1 / (4 / 255))
    assert ActivationQuant.from_range(0.5, 2.0).zero_point == 0  # the range is widened to contain 0
    sym = ActivationQuant.symmetric(2.54)
    assert sym.scale == pytest.approx(0.02) and sym.zero_point == 128
    obs = RangeObserver("percentile", 99.0)
    obs.observe(torch.linspace(-1, 1, 1001))
    low, high = obs.range()
    assert low == pytest.approx(-0.98, abs=3e-3) and high == pytest.approx(0.98, abs=3e-3)  # nearest rank


def _tiny_problem():
    """A loss with a non-trivial Hessian: a 2-layer tanh network on fixed data."""
    torch.manual_seed(0)
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    w1, w2 = torch.randn(4, 3, requires_grad=True), torch.randn(1, 4, requires_grad=True)

    def loss(a, b):
        return ((torch.tanh(x @ a.T) @ b.T - y) ** 2).mean()

    return loss, w1, w2


def test_hessian_vector_product_matches_explicit_hessian():
    loss, w1, w2 = _tiny_problem()
    grads = torch.autograd.grad(loss(w1, w2), [w1], create_graph=True)
    v = torch.randn(4, 3)
    hv = hessian_vector_product(grads, [w1], [v])[0]
    h = torch.autograd.functional.hessian(lambda a: loss(a, w2), w1.detach()).reshape(12, 12)
    assert torch.allclose(hv.reshape(-1), h @ v.reshape(-1), atol=1e-5)


def test_power_iteration_finds_the_top_eigenvalue():
    loss, w1, w2 = _tiny_problem()
    grads = torch.autograd.grad(loss(w1, w2), [w1, w2], create_graph=True)
    top = top_eigenvalue(grads, [w1, w2], iterations=500, tol=1e-7)
    h = torch.autograd.functional.hessian(loss, (w1.detach(), w2.detach()))
    full = torch.cat([torch.cat([h[0][0].reshape(12, 12), h[0][1].reshape(12, 4)], 1),
                      torch.cat([h[1][0].reshape(4, 12), h[1][1].reshape(4, 4)], 1)])
    assert top == pytest.approx(float(torch.linalg.eigvalsh(full).max()), rel=1e-3)


def test_power_iteration_finds_the_top_eigenvalue_when_a_negative_one_dominates():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    a = q @ torch.diag(torch.tensor([-5.0, 2.0, 1.0, 0.5])) @ q.T  # indefinite; |-5| dominates
    w = torch.randn(4, requires_grad=True)
    grads = torch.autograd.grad(0.5 * w @ a @ w, [w], create_graph=True)
    assert top_eigenvalue(grads, [w], iterations=500, tol=1e-9) == pytest.approx(2.0, rel=1e-4)


def test_sensitivity_and_bit_budget():
    assert sensitivity([1.0, 3.0]) == pytest.approx(2.0 + 1.0)
    sizes = {0: 100, 1: 100, 2: 100, 3: 100}
    bits = assign_bits({0: 10.0, 1: 1.0, 2: 0.1, 3: 5.0}, sizes, (2, 3, 4, 8), average_bits=3.0)
    assert sum(bits[k] * sizes[k] for k in sizes) <= 3.0 * 400
    assert bits[0] >= bits[3] >= bits[1] >= bits[2] and bits[0] > bits[2]  # more sensitive, more bits
    assert assign_bits({0: 1.0, 1: 2.0}, {0: 10, 1: 10}, (2, 4), 2.0) == {0: 2, 1: 2}
    with pytest.raises(ConfigError, match="below the smallest bit choice"):
        assign_bits({0: 1.0}, {0: 10}, (2, 4), 1.5)


def test_gobo_outliers_and_refined_centroids():
    torch.manual_seed(0)
    w = torch.randn(64, 64) * 0.05
    w[3, 5], w[10, 2] = 1.0, -0.8  # two clear outliers
    code = gobo_encode(w, bits=3, outlier_std=3.0)
    assert code.codebook.numel() == 8 and torch.all(code.codebook[1:] > code.codebook[:-1])
    flat = w.reshape(-1)
    expected = ((flat - flat.mean()).abs() > 3.0 * flat.std()).nonzero().reshape(-1)
    assert torch.equal(code.outlier_index, expected) and {3 * 64 + 5, 10 * 64 + 2} <= set(expected.tolist())
    decoded = code.decode()
    assert torch.equal(decoded.reshape(-1)[expected], flat[expected])  # outliers are exact
    inliers = torch.ones_like(flat, dtype=torch.bool)
    inliers[expected] = False
    refined = (decoded.reshape(-1) - flat)[inliers].abs().sum()
    initial = gobo_encode(w, bits=3, max_iterations=1)  # linear spacing, one refinement step at most
    assert code.iterations > 1
    assert refined <= (initial.decode().reshape(-1) - flat)[inliers].abs().sum()
    assert refined < 0.5 * (w.abs().sum() - 1.8)  # far better than dropping the weights
