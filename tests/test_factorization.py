"""Low-rank factorization (``svd``, FWSVD): the maths, rank allocation, composition, reload and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import run_steps
from torch import nn

from slimbert.data.tasks import get_task
from slimbert.errors import ConfigError
from slimbert.export.onnx import export_onnx, onnx_logits, onnx_session, sample_batch
from slimbert.measure.flops import flops_per_example
from slimbert.measure.size import count_parameters
from slimbert.methods.factorization.common.fisher import axis_weights, weight_fisher
from slimbert.methods.factorization.common.low_rank import LowRankLinear, break_even_rank, factorize, weighted_svd
from slimbert.methods.factorization.common.rank_allocation import Spectrum, allocate_global, rank_for_energy
from slimbert.models.artifact import load_compressed, save_compressed
from slimbert.models.loading import load_model
from slimbert.models.shape import shape_of, shape_of_spec
from slimbert.models.structure import layer_views
from slimbert.recipe import Recipe
from slimbert.steps.sampling import sample_batches
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

QUICK = {"max_steps": 2, "batch_size": 8, "eval_batch_size": 32}


def test_full_rank_svd_reproduces_the_layer():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    x = torch.randn(3, 5, 12)
    full = factorize(linear, rank=7)
    torch.testing.assert_close(full(x), linear(x), atol=1e-5, rtol=1e-5)
    weighted = factorize(linear, rank=7, input_weights=torch.rand(12) + 0.1)  # any weighting: exact at full rank
    torch.testing.assert_close(weighted(x), linear(x), atol=1e-5, rtol=1e-5)
    assert full.rank == 7 and (full.in_features, full.out_features) == (12, 7)


def test_truncation_is_the_best_rank_r_approximation():
    torch.manual_seed(1)
    w = torch.randn(9, 6)
    linear = nn.Linear(6, 9, bias=False)
    linear.weight.data.copy_(w)
    s = torch.linalg.svdvals(w)
    err = torch.linalg.matrix_norm(factorize(linear, 2).dense_weight() - w)
    torch.testing.assert_close(err, s[2:].pow(2).sum().sqrt(), atol=1e-5, rtol=1e-5)  # Eckart-Young


def test_fisher_weighting_against_a_hand_computed_case():
    """W = diag(1, 1.5). Plain rank-1 SVD keeps the larger entry (1.5). With importances 3 and 1 on the first and
    second feature (input columns or output rows alike, W being diagonal) the weighted matrix is diag(3, 1.5), so
    FWSVD keeps the first feature's weight (1) instead."""
    linear = nn.Linear(2, 2, bias=False)
    linear.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.5]]))
    plain = factorize(linear, 1).dense_weight()
    torch.testing.assert_close(plain, torch.tensor([[0.0, 0.0], [0.0, 1.5]]), atol=1e-6, rtol=0)
    fisher = torch.tensor([[9.0, 0.0], [0.0, 1.0]])  # F (out, in): row sums (9, 1), column sums (9, 1)
    for axis in ("input", "output"):
        weights = axis_weights(fisher, axis)
        torch.testing.assert_close(weights, torch.tensor([3.0, 1.0]))
        fw = factorize(linear, 1, **{f"{axis}_weights": weights}).dense_weight()
        torch.testing.assert_close(fw, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), atol=1e-6, rtol=0)
        _, s, _ = weighted_svd(linear.weight, **{f"{axis}_weights": weights})
        torch.testing.assert_close(s, torch.tensor([3.0, 1.5]))


def test_the_two_fisher_axes_weight_different_dimensions():
    """F (out=2, in=3) with all its mass on output row 0 and input column 2: the output reading weights rows,
    the input reading weights columns; each reconstruction is exact at full rank."""
    fisher = torch.zeros(2, 3)
    fisher[0, 2] = 4.0
    torch.testing.assert_close(axis_weights(fisher, "output"), torch.tensor([2.0, 0.002]))
    torch.testing.assert_close(axis_weights(fisher, "input"), torch.tensor([0.002, 0.002, 2.0]))
    torch.manual_seed(0)
    linear = nn.Linear(3, 2, bias=False)
    for kwargs in ({"output_weights": axis_weights(fisher, "output")},
                   {"input_weights": axis_weights(fisher, "input")}):
        torch.testing.assert_close(factorize(linear, 2, **kwargs).dense_weight(), linear.weight.detach(), atol=1e-4,
                                   rtol=1e-4)


def test_fisher_is_squared_gradients_summed_over_batches(tiny_bert_dir, tiny_glue):
    settings = RunSettings(data_dir=str(tiny_glue), max_train_samples=16, max_eval_samples=8)
    data = TaskDataset(get_task("sst2"), settings)
    bundle = load_model(tiny_bert_dir, data.task)
    view = layer_views(bundle.model)[0]
    ctx = type("Ctx", (), {"data": data, "task": data.task})()
    batches = sample_batches(ctx, bundle.tokenizer, 16, batch_size=8)
    got = weight_fisher(bundle.model, {"q": view.query, "o": view.ffn_out}, batches, regression=False)
    # By hand: one backward per batch, square, sum over batches.
    expected = {"q": torch.zeros_like(view.query.weight), "o": torch.zeros_like(view.ffn_out.weight)}
    bundle.model.eval()
    for batch in batches:
        bundle.model.zero_grad()
        out = bundle.model(**{k: v for k, v in batch.items() if k != "labels"})
        nn.functional.cross_entropy(out.logits, batch["labels"]).backward()
        expected["q"] += view.query.weight.grad.pow(2)
        expected["o"] += view.ffn_out.weight.grad.pow(2)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-12)


def test_rank_for_energy_and_break_even():
    assert rank_for_energy(torch.tensor([4.0, 3.0, 2.0, 1.0]), 0.7) == 2  # 7/10 held by two components
    assert rank_for_energy(torch.tensor([4.0, 3.0, 2.0, 1.0]), 0.71) == 3
    assert break_even_rank(384, 1536) == pytest.approx(307.2)


def test_global_allocation_hits_its_budget_and_leaves_break_even_matrices_dense():
    torch.manual_seed(0)
    flat = Spectrum("flat", 8, 8, torch.ones(8))  # every component equally useful: it would reach break-even (4)
    steep = [Spectrum(f"steep{i}", 64, 32, torch.logspace(2, -6, 32)) for i in range(3)]
    spectra = [flat, *steep]
    for keep in (0.2, 0.5, 0.7):
        ranks = allocate_global(spectra, keep, normalize=False)
        cost = sum(s.dense_cost if ranks[s.name] is None else ranks[s.name] * s.component_cost for s in spectra)
        budget = keep * sum(s.dense_cost for s in spectra)
        assert cost <= budget + 1e-9
        assert cost >= budget - max(s.component_cost for s in spectra) - flat.dense_cost  # spent, up to one step
    ranks = allocate_global(spectra, 0.5, normalize=False)
    assert ranks["flat"] is None  # its rank reached break-even: dense is cheaper
    assert all(r is not None and r >= 1 for n, r in ranks.items() if n != "flat")


@pytest.fixture(scope="module")
def task_data(tiny_glue):
    return TaskDataset(get_task("sst2"), RunSettings(data_dir=str(tiny_glue), max_train_samples=32,
                                                     max_eval_samples=16))


def test_keep_ratio_hits_its_target_and_counts_follow_the_factors(tiny_bert_dir, task_data, tmp_path):
    bundle = load_model(tiny_bert_dir, task_data.task)
    params_before = count_parameters(bundle.model)["no_embeddings"]
    flops_before = flops_per_example(bundle.model, 16)
    linears_before = sum(m.weight.numel() for v in layer_views(bundle.model) for m in v.linears().values())
    out, ctx = run_steps(bundle.clone(), [{"method": "svd", "keep_ratio": 0.5, "train": None}], task_data, tmp_path)
    factored = [m for v in layer_views(out.model) for m in v.linears().values()]
    assert all(isinstance(m, LowRankLinear) for m in factored)
    linears_after = sum(m.rank * (m.in_features + m.out_features) for m in factored)
    assert 0.4 <= linears_after / linears_before <= 0.5  # floor of the per-matrix rank: at most the target
    removed = linears_before - linears_after
    assert count_parameters(out.model)["no_embeddings"] == params_before - removed
    assert flops_per_example(out.model, 16) == flops_before - 2 * 16 * removed
    assert any("FWSVD" in n or "SVD" in n for n in ctx.notes)


def test_svd_then_dynamic_int8_reloads_and_round_trips_to_onnx(tiny_bert_dir, task_data, tmp_path):
    bundle = load_model(tiny_bert_dir, task_data.task)
    svd = {"method": "svd", "rank": 6, "weighting": "fisher", "fisher_samples": 8, "train": QUICK}
    out, _ = run_steps(bundle, [svd, {"method": "dynamic-int8"}], task_data, tmp_path)
    artifact = tmp_path / "artifact"
    save_compressed(out, artifact)
    shape = shape_of_spec(artifact)
    assert shape.factored_linears and shape.compressed_linears
    reloaded = load_compressed(artifact)
    q = layer_views(reloaded.model)[0].query
    assert isinstance(q, LowRankLinear) and type(q.up).__name__ == "Int8DynamicLinear"
    batch = sample_batch(out)
    with torch.no_grad():
        ours = reloaded.model(**batch).logits.numpy()
        np.testing.assert_allclose(ours, out.model(**batch).logits.numpy(), atol=1e-5)
    exported = export_onnx(reloaded, tmp_path / "model.onnx")
    got = onnx_logits(onnx_session(exported.path), batch)
    assert np.abs(got - ours).max() <= 0.1 * max(float(np.abs(ours).max()), 1.0)


def test_float_factors_export_exactly(tiny_bert_dir, task_data, tmp_path):
    bundle = load_model(tiny_bert_dir, task_data.task)
    out, _ = run_steps(bundle, [{"method": "svd", "energy": 0.5, "targets": ["ffn_in", "ffn_out"], "train": None}],
                  task_data, tmp_path)
    batch = sample_batch(out)
    exported = export_onnx(out, tmp_path / "model.onnx")
    with torch.no_grad():
        ours = out.model.eval()(**batch).logits.numpy()
    np.testing.assert_allclose(onnx_logits(onnx_session(exported.path), batch), ours, atol=1e-4)
    assert exported.fused_ops.get("Attention", 0) == 2  # untouched q/k/v keep ONNX Runtime's attention fusion


@pytest.mark.parametrize("step, message", [
    ({"method": "svd", "rank": 0}, "rank must be >= 1"),
    ({"method": "svd", "rank": 16}, "would not save parameters"),  # 32 x 32 breaks even at 16
    ({"method": "svd"}, "exactly one of rank, keep_ratio"),
    ({"method": "svd", "rank": 4, "keep_ratio": 0.5}, "exactly one of rank, keep_ratio"),
    ({"method": "svd", "keep_ratio": 1.0}, "keep_ratio"),
    ({"method": "svd", "energy": 0.9, "allocation": "sensitivity"}, "set keep_ratio"),
    ({"method": "svd", "keep_ratio": 0.5, "targets": ["query", "query"]}, "distinct"),
])
def test_bad_configs_fail_before_any_work(tiny_bert_dir, step, message):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    with pytest.raises(ConfigError, match=message):
        Recipe.from_dict({"name": "bad", "steps": [step]}).check(shape_of(bundle.model))


@pytest.mark.parametrize("later", ["prune-heads", "static-int8", "svd"])
def test_steps_needing_plain_linears_cannot_follow_a_factorization(tiny_bert_dir, later):
    bundle = load_model(tiny_bert_dir, get_task("sst2"))
    recipe = Recipe.from_dict({"name": "order", "steps": [{"method": "svd", "keep_ratio": 0.5},
                                                          {"method": later, **({"keep_ratio": 0.5} if later == "svd"
                                                                               else {})}]})
    with pytest.raises(ConfigError, match="low-rank factor pairs"):
        recipe.check(shape_of(bundle.model))
