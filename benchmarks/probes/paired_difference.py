"""How precisely does an evaluation split measure a compressed model's accuracy against its teacher's?

    python benchmarks/probes/paired_difference.py --reference runs/teacher-minilm-sst2-sentences \
        --model runs/bench/fast-cpu-e-sentences-sst2 [--model ...] --task sst2 [--runtime openvino ...] \
        [--holdout 1000 --holdout-mode sentences --eval-split heldout] [--budget 1.0]

"Within 1 point of the teacher" compares two accuracies on the same examples, so they are paired: what the split
cannot resolve is set by the examples on which the two models disagree, not by each accuracy's own sampling error.
With ``b`` examples only the reference gets right and ``c`` only the compressed model gets right, out of ``n``, the
difference is ``(c - b) / n`` and its standard error (the paired, McNemar-style one)

    se = sqrt(b + c - (b - c)^2 / n) / n

which is well below the ~sqrt(2 p (1 - p) / n) of two independent samples when the models agree on most examples.
For each compressed model and runtime (the reference runs on PyTorch): both accuracies, the difference in points,
``b``, ``c``, the paired standard error, a 95% interval (normal approximation), and where the interval lies against
``--budget`` (``within``: all of it above -budget; ``outside``: all of it below; ``unresolved``: it straddles).
Accuracy only: the paired formula is for a per-example score (MRPC's F1 is not one). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from slimbert.data.metrics import predictions_from_logits
from slimbert.data.tasks import get_task
from slimbert.export.runtimes import RUNTIMES, open_session
from slimbert.measure.latency import set_threads
from slimbert.models.loading import load_model
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset

Z95 = 1.959964


def paired_difference(reference_correct: np.ndarray, compressed_correct: np.ndarray, budget: float) -> dict:
    """The accuracy difference (compressed - reference, in points) of two models scored on the same examples,
    from two boolean arrays (N,) of which examples each got right; its paired standard error and 95% interval."""
    reference_correct = np.asarray(reference_correct, dtype=bool)
    compressed_correct = np.asarray(compressed_correct, dtype=bool)
    if reference_correct.shape != compressed_correct.shape or reference_correct.ndim != 1 or not len(reference_correct):
        raise ValueError("need two non-empty (N,) arrays of the same examples")
    n = len(reference_correct)
    only_reference = int(np.sum(reference_correct & ~compressed_correct))  # b
    only_compressed = int(np.sum(~reference_correct & compressed_correct))  # c
    difference = (only_compressed - only_reference) / n
    se = math.sqrt(max(only_reference + only_compressed - (only_reference - only_compressed) ** 2 / n, 0.0)) / n
    low, high = 100 * (difference - Z95 * se), 100 * (difference + Z95 * se)
    verdict = "within" if low >= -budget else "outside" if high < -budget else "unresolved"
    return {"n": n, "reference_accuracy": round(100 * float(reference_correct.mean()), 2),
            "compressed_accuracy": round(100 * float(compressed_correct.mean()), 2),
            "difference_points": round(100 * difference, 2), "only_reference_right": only_reference,
            "only_compressed_right": only_compressed, "paired_se_points": round(100 * se, 2),
            "independent_se_points": round(100 * math.sqrt(2 * compressed_correct.mean()
                                                           * (1 - compressed_correct.mean()) / n), 2),
            "interval95_points": [round(low, 2), round(high, 2)], "budget_points": budget, "verdict": verdict}


def correct_per_example(task, session, datasets: dict, pad: int) -> np.ndarray:
    """Which examples of the evaluation split(s) a session classifies right: (N,) booleans, splits in order."""
    out = []
    for dataset in datasets.values():
        predictions = predictions_from_logits(task, session.predict(dataset, 128, pad))
        out.append(predictions == np.asarray(dataset.labels))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="the teacher (run on PyTorch)")
    parser.add_argument("--model", action="append", required=True, help="a compressed artifact directory")
    parser.add_argument("--runtime", action="append", choices=RUNTIMES, help="default: openvino")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--holdout", type=int)
    parser.add_argument("--holdout-mode", default="random", choices=["random", "sentences"])
    parser.add_argument("--eval-split", default="dev", choices=["dev", "heldout"])
    parser.add_argument("--data-dir")
    parser.add_argument("--budget", type=float, default=1.0, help="points of accuracy the model may lose")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    task = get_task(args.task)
    if "accuracy" not in task.metrics:
        parser.error(f"{task.name} has no accuracy metric; the paired formula needs a per-example score")
    data = TaskDataset(task, RunSettings(data_dir=args.data_dir, holdout=args.holdout, holdout_mode=args.holdout_mode,
                                         eval_split=args.eval_split))
    reference = load_model(args.reference, task)
    reference_correct = correct_per_example(task, open_session(reference, None, "pytorch", args.threads),
                                            data.eval_sets(reference.tokenizer), reference.tokenizer.pad_token_id or 0)
    record: dict = {"task": task.name, "reference": args.reference,
                    "settings": {"holdout": args.holdout, "holdout_mode": args.holdout_mode,
                                 "eval_split": args.eval_split}, "models": {}}
    for model in args.model:
        bundle = load_model(model, task)
        for runtime in args.runtime or ["openvino"]:
            session = open_session(bundle, model, runtime, args.threads)
            correct = correct_per_example(task, session, data.eval_sets(bundle.tokenizer),
                                          bundle.tokenizer.pad_token_id or 0)
            record["models"].setdefault(model, {})[runtime] = paired_difference(reference_correct, correct,
                                                                                 args.budget)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
