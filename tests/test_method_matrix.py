"""One test matrix: every registered built-in method x {bert, roberta, distilbert} tiny models.

Each case applies the method as a one-step recipe with a tiny budget (2 optimizer steps where it trains,
distilled from the input model where it can be) and checks the invariants every method owes:

* the recipe validates against the model's shape before any work (``Recipe.check``);
* no training-time wrapper or hook survives the step (only torch / transformers modules, slimbert's
  savable module kinds and its non-Transformer students remain);
* save -> load gives the same logits;
* the ONNX export runs and matches the reloaded model (exactly for float graphs, closely for int8);
* the report card built from the run is complete.

``MATRIX`` must name every method registered under ``slimbert.methods`` (a new method cannot land
untested), and no case may be skipped (see ``conftest.pytest_runtest_logreport``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimbert.api import Exports, build_report, describe, export_runtimes, run_recipe
from slimbert.data.tasks import get_task
from slimbert.export.onnx import computes_in_int8, export_onnx, sample_batch
from slimbert.export.runtimes import open_session
from slimbert.methods import available_methods
from slimbert.models.artifact import ONNX_NAME, load_compressed, save_compressed
from slimbert.models.loading import load_model
from slimbert.models.module_kinds import describe_module
from slimbert.models.shape import shape_of
from slimbert.recipe import Recipe
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

ARCHS = ("bert", "roberta", "distilbert")
QUICK = {"max_steps": 2, "batch_size": 8, "eval_batch_size": 32}
DISTIL = {"temperature": 2.0, "logits_weight": 0.9, "hard_label_weight": 0.1}

# Tiny-budget step fields per method. Sizes follow the tiny models: hidden 32, 4 heads of 8, FFN 37, 2 layers.
MATRIX: dict[str, dict] = {
    "dynamic-int8": {"quantize_embeddings": True},
    "static-int8": {"calibration_samples": 16},
    "qat-int8": {"embedding_bits": 8, "train": QUICK},
    "qbert": {"bit_choices": [2, 4, 8], "average_bits": 4.0, "ffn_groups": 4, "hessian_batches": 1,
              "hessian_batch_size": 4, "power_iterations": 2, "train": QUICK},
    "ternary": {"embedding_bits": 8, "train": QUICK},
    "gobo": {"embedding_bits": 3},
    "int4-weight-only": {"block_size": 16, "embedding_bits": 8},
    "magnitude": {"sparsity": 0.5, "schedule": {"update_every": 1}, "distill": DISTIL, "train": QUICK},
    "movement": {"sparsity": 0.5, "schedule": {"update_every": 1}, "distill": DISTIL, "train": QUICK},
    "lottery-ticket": {"sparsity": 0.5, "rounds": 1, "train": QUICK},
    "prune-heads": {"fraction": 0.25, "rounds": 1, "importance_samples": 8, "distill": DISTIL, "train": QUICK},
    "prune-ffn": {"fraction": 0.3, "rounds": 1, "importance_samples": 8, "train": QUICK},
    "drop-layers": {"num_drop": 1, "distill": DISTIL, "train": QUICK},
    "layerdrop": {"num_drop": 1, "train": QUICK},
    "block-movement": {"sparsity": 0.5, "ffn_sparsity": 0.5, "block_rows": 8, "block_cols": 8, "train": QUICK},
    "student": {"num_layers": 1},
    "distill": {"preset": "last", "train": QUICK},
    "albert-embeddings": {"factor_dim": 8, "distill": DISTIL, "train": QUICK},
    "share-layers": {"group_size": 2, "distill": DISTIL, "train": QUICK},
    "vocab-trim": {},
    "embedding-codebook": {"subspaces": 4, "centroids": 16, "iterations": 3, "distill": DISTIL, "train": QUICK},
    "svd": {"keep_ratio": 0.5, "weighting": "fisher", "fisher_samples": 8, "distill": DISTIL, "train": QUICK},
    "early-exit": {"training": "joint", "criterion": "entropy", "threshold": 0.5, "train": QUICK},
    "token-dropping": {"final_retention": 0.5, "distill": DISTIL, "train": QUICK},
}


def builtin_methods() -> set[str]:
    """Methods registered by slimbert itself (tests register throwaway ones too)."""
    return {name for name, m in available_methods().items() if m.apply.__module__.startswith("slimbert.methods.")}


def test_the_matrix_covers_every_registered_method():
    assert set(MATRIX) == builtin_methods()


@pytest.fixture(scope="module")
def task_data(tiny_glue):
    settings = RunSettings(data_dir=str(tiny_glue), max_train_samples=32, max_eval_samples=16)
    return TaskDataset(get_task("sst2"), settings)


@pytest.fixture(scope="module")
def baselines(tiny_model_dirs, task_data, tmp_path_factory):
    """Per architecture: the input model (classifier scaled up, so that logit comparisons mean something) and
    its measurements, shared by every method's case."""
    out = {}
    for arch in ARCHS:
        bundle = load_model(tiny_model_dirs[arch], task_data.task)
        head = bundle.model.get_submodule(bundle.arch.classifier[-1])
        with torch.no_grad():
            [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(50)
        directory = tmp_path_factory.mktemp(f"baseline-{arch}")
        save_compressed(bundle, directory)
        info, _ = describe(bundle, directory, Exports(onnx=export_onnx(bundle, directory / ONNX_NAME)), task_data)
        out[arch] = (bundle, info)
    return out


def _logits(model, batch) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(**batch).logits.numpy()


def leftovers(model: torch.nn.Module) -> list[str]:
    """Modules that are neither plain torch/transformers modules, savable kinds, nor slimbert's students, and
    modules still carrying hooks: what a method's bake step should have removed."""
    found = []
    for name, module in model.named_modules():
        where = type(module).__module__
        plain = where.startswith(("torch.", "transformers.", "slimbert.models.nontransformer"))
        if not plain and describe_module(module) is None:
            found.append(f"{name or 'model'}: {type(module).__name__}")
        hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values(), *module._backward_hooks.values()]
        # transformers installs its own output-capturing hooks on first use of output_hidden_states: not ours.
        ours = [h for h in hooks if not getattr(h, "__module__", "").startswith("transformers.")]
        if ours:
            found.append(f"{name or 'model'}: hooks left ({', '.join(getattr(h, '__qualname__', repr(h)) for h in ours)})")
    return found


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(MATRIX))
def test_method_invariants(method, arch, baselines, task_data, tmp_path):
    baseline, base_info = baselines[arch]
    recipe = Recipe.from_dict({"name": f"matrix-{method}", "steps": [{"method": method, **MATRIX[method]}]})
    recipe.check(shape_of(baseline.model))

    compressed, steps, ctx = run_recipe(baseline.clone(), recipe, task_data, task_data.settings, tmp_path / "work",
                                        log=lambda m: None, teacher=baseline.clone())
    assert leftovers(compressed.model) == []

    artifact = tmp_path / "artifact"
    save_compressed(compressed, artifact)
    reloaded = load_compressed(artifact)
    batch = sample_batch(compressed)
    ours = _logits(reloaded.model, batch)
    np.testing.assert_allclose(ours, _logits(compressed.model, batch), atol=1e-5)

    exports = export_runtimes(reloaded, artifact, task_data)
    spread = max(float(np.abs(ours).max()), 1.0)
    # What the artifact serves on PyTorch (through the adaptive runner for early exit / token dropping).
    served = open_session(reloaded, None, "pytorch").logits(batch)
    adaptive = bool(reloaded.adaptive)
    # Float graphs match the PyTorch artifact exactly; int8 graphs (the runtime's own activation scales) closely.
    for runtime, exported in (("onnxruntime", exports.onnx), ("openvino", exports.openvino)):
        if adaptive and runtime == "openvino":  # the runner drives ONNX Runtime segments; OpenVINO is refused
            assert exported is None and any("OpenVINO: not converted" in n for n in exports.notes)
            continue
        assert exported is not None, exports.notes
        got = open_session(reloaded, artifact, runtime).logits(batch)
        ours = served
        # OpenVINO's int8 is NNCF's own post-training scheme (calibrated on 32 tiny examples), not the artifact's:
        # close in kind, not in detail.
        tolerance = 1e-3 if not computes_in_int8(reloaded) else 0.1 if runtime == "onnxruntime" else 0.5
        assert np.abs(got - ours).max() <= tolerance * spread, (runtime, np.abs(got - ours).max(), spread)

    measured, _ = describe(reloaded, artifact, exports, task_data)
    card = build_report(baseline, None, recipe, task_data, base_info, measured, steps, ctx.claims, ctx.notes, threads=1,
                        stages=ctx.stages)
    assert card.missing() == []
    assert [s.method for s in card.steps] == [method] and [s.method for s in card.stages] == [method]


def test_leftovers_finds_a_surviving_wrapper_and_hook(tiny_model_dirs):
    """The invariant itself: a training wrapper or a hook of ours left in the model is reported."""
    from slimbert.methods.pruning.common.masked_linear import MaskedLinear
    from slimbert.models.structure import layer_views

    bundle = load_model(tiny_model_dirs["bert"], get_task("sst2"))
    assert leftovers(bundle.model) == []
    view = layer_views(bundle.model)[0]
    view.replace("query", MaskedLinear(view.query))
    handle = view.key.register_forward_hook(lambda module, args, output: output)
    found = leftovers(bundle.model)
    assert any("MaskedLinear" in f for f in found) and any("hooks left" in f for f in found)
    handle.remove()
