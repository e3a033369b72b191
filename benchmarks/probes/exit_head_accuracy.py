"""How good is each exit head? Per layer: dev accuracy, mean normalised entropy, share below an entropy threshold.

    python benchmarks/probes/exit_head_accuracy.py runs/bench/early-exit-entropy-sst2 --task sst2 [--examples 400]

Runs every dev sentence through every layer (no exits) and reads every exit head and the final classifier.
"""

from __future__ import annotations

import argparse
import json

import torch

from slimbert.data.encoding import PadCollator
from slimbert.data.tasks import get_task
from slimbert.models.adaptive.criteria import normalised_entropy
from slimbert.models.adaptive.segments import TorchSegments
from slimbert.models.artifact import load_compressed
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--task", required=True)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--threshold", type=float, default=0.2)
    args = parser.parse_args()
    bundle = load_compressed(args.artifact)
    data = TaskDataset(get_task(args.task), RunSettings(max_eval_samples=args.examples))
    dev = next(iter(data.eval_sets(bundle.tokenizer).values()))
    batch = PadCollator(bundle.tokenizer.pad_token_id or 0)([dev[i] for i in range(len(dev))])
    labels = batch.pop("labels")
    inputs = {k: v for k, v in batch.items() if k in bundle.arch.inputs}
    segments, mask = TorchSegments(bundle.model.eval()), inputs["attention_mask"]
    rows = []
    with torch.no_grad():
        hidden = segments.embed(inputs)
        for i in range(segments.num_layers):
            hidden, _ = segments.layer(i, hidden, mask, False)
            logits = segments.exit(i, hidden, mask) if i in segments.exit_layers else segments.head(hidden)
            entropy = normalised_entropy(logits)
            rows.append({"layer": i + 1, "head": "exit" if i in segments.exit_layers else "final",
                         "accuracy": float((logits.argmax(-1) == labels).float().mean()),
                         "mean_entropy": float(entropy.mean()), "below_threshold": float((entropy < args.threshold).float().mean())})
    print(json.dumps({"artifact": args.artifact, "examples": len(dev), "threshold": args.threshold,
                      "pooling": getattr(bundle.model.exit_heads, "pooling", None), "layers": rows}, indent=2))


if __name__ == "__main__":
    main()
