"""How many dev predictions a compressed model shares with its teacher (PyTorch, the task's eval split).

    python benchmarks/probes/prediction_agreement.py runs/teacher-minilm-sst2 runs/bench/vocab-trim-sst2 --task sst2

Prints the share of examples whose predicted class is the same, and each model's metric.
"""

from __future__ import annotations

import argparse

import numpy as np

from slimbert.data.tasks import get_task
from slimbert.models.loading import load_model
from slimbert.training.evaluate import predict
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("compressed")
    parser.add_argument("--task", required=True)
    args = parser.parse_args()
    task = get_task(args.task)
    data = TaskDataset(task, RunSettings())
    predictions = {}
    for name in (args.reference, args.compressed):
        bundle = load_model(name, task)
        for split, dataset in data.eval_sets(bundle.tokenizer).items():
            predictions.setdefault(split, []).append(predict(bundle.model, dataset, 128, bundle.tokenizer.pad_token_id or 0))
    for split, (ref, comp) in predictions.items():
        same = float(np.mean(ref.argmax(-1) == comp.argmax(-1)))
        print(f"{split}: {same:.2%} of {len(ref)} predictions unchanged")


if __name__ == "__main__":
    main()
