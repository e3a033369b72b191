"""What does OpenVINO's default bf16, for the ops NNCF left in float, cost an int8 IR in accuracy, and f32 in speed?

    python benchmarks/probes/openvino_int8_hint.py --model runs/bench/fast-cpu-d-sentences-sst2 --task sst2 \
        [--teacher runs/teacher-minilm-sst2-sentences] [--holdout 1000 --holdout-mode sentences --eval-split heldout]

On a CPU with bf16 (this one: AMX + AVX-512 BF16) OpenVINO computes in bf16 unless ``INFERENCE_PRECISION_HINT`` is
f32; an NNCF int8 IR keeps softmax, layer norms, GELU and the residual adds in float, so the hint decides their
precision. For each int8 IR (a slimbert artifact's, and with ``--teacher`` the OpenVINO + NNCF peer of
``bench peers`` built from that teacher): accuracy on the evaluation split at evaluation batches 32 and 128 with
each hint (bf16 rounding makes a prediction depend on the batch it is padded into), how many predictions the
hints disagree on, and latency at b1s128 / b32s128 timed interleaved. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from slimbert.data.tasks import get_task
from slimbert.export.openvino import (
    OPENVINO_DIR,
    OPENVINO_XML,
    export_openvino,
    nncf_int8_ir,
    openvino_logits,
    openvino_model,
    predict_openvino,
)
from slimbert.measure.latency import grid_key, random_inputs, set_threads, time_interleaved
from slimbert.models.loading import load_model
from slimbert.training.evaluate import evaluation_from_logits
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

HINTS = {"bf16 (default)": None, "f32": "f32"}
SHAPES = ((1, 128), (32, 128))


def disagreements(a_logits: np.ndarray, b_logits: np.ndarray) -> int:
    """How many examples two runs of a model classify differently: (N, C) logits each."""
    return int((a_logits.argmax(-1) != b_logits.argmax(-1)).sum())


def probe_ir(xml: Path, data: TaskDataset, tokenizer, names: tuple[str, ...], threads: int, budget_s: float) -> dict:
    """Accuracy per hint and evaluation batch, disagreements between the hints, latency per hint and shape."""
    pad = tokenizer.pad_token_id or 0
    compiled = {hint: openvino_model(xml, threads, hint=value) for hint, value in HINTS.items()}
    out: dict = {"accuracy": {}, "disagreements": {}, "latency_ms": {}}
    eval_sets = data.eval_sets(tokenizer)
    for batch in (32, 128):
        logits = {hint: {split: predict_openvino(model, dataset, batch, pad) for split, dataset in eval_sets.items()}
                  for hint, model in compiled.items()}
        for hint, per_split in logits.items():
            metrics = evaluation_from_logits(data.task, per_split, eval_sets).metrics
            out["accuracy"].setdefault(hint, {})[f"eval batch {batch}"] = metrics
        first, second = list(logits)
        out["disagreements"][f"eval batch {batch}"] = sum(
            disagreements(logits[first][s], logits[second][s]) for s in logits[first])
    vocab = int(tokenizer.vocab_size)
    for batch, seq in SHAPES:
        feeds = {k: v.numpy() for k, v in random_inputs(vocab, names, batch, seq).items()}
        runners = {hint: (lambda m=model: openvino_logits(m, feeds)) for hint, model in compiled.items()}
        for hint, stats in time_interleaved(runners, budget_s=budget_s).items():
            out["latency_ms"].setdefault(hint, {})[grid_key(batch, seq)] = round(stats.median_ms, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="an artifact with an int8 OpenVINO IR")
    parser.add_argument("--teacher", help="also probe the OpenVINO + NNCF int8 peer of this fp32 model")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--holdout", type=int)
    parser.add_argument("--holdout-mode", default="random", choices=["random", "sentences"])
    parser.add_argument("--eval-split", default="dev", choices=["dev", "heldout"])
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timing per shape")
    args = parser.parse_args()
    set_threads(args.threads)
    settings = RunSettings(data_dir=args.data_dir, holdout=args.holdout, holdout_mode=args.holdout_mode,
                           eval_split=args.eval_split)
    data = TaskDataset(get_task(args.task), settings)
    record: dict = {"task": data.task.name, "settings": {"holdout": args.holdout, "holdout_mode": args.holdout_mode,
                                                         "eval_split": args.eval_split}, "irs": {}}
    for model in args.model:
        bundle = load_model(model, data.task)
        xml = Path(model) / OPENVINO_DIR / OPENVINO_XML
        record["irs"][model] = probe_ir(xml, data, bundle.tokenizer, bundle.arch.inputs, args.threads, args.budget)
    if args.teacher:
        teacher = load_model(args.teacher, data.task)
        with tempfile.TemporaryDirectory() as work:
            fp32 = export_openvino(teacher, Path(work) / "fp32")
            # Calibrated as `bench peers` calibrates it: 300 training examples of the full training split.
            peer_data = TaskDataset(data.task, RunSettings(data_dir=args.data_dir))
            int8 = nncf_int8_ir(fp32.path, Path(work) / "int8.xml", peer_data.train_set(teacher.tokenizer),
                                teacher.tokenizer.pad_token_id or 0, teacher.arch.inputs)
            record["irs"][f"openvino-nncf-int8 of {args.teacher}"] = probe_ir(
                int8, data, teacher.tokenizer, teacher.arch.inputs, args.threads, args.budget)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
