"""How independent of the training data is a held-out split? Verbatim overlap of its texts with training texts.

    python benchmarks/probes/heldout_overlap.py --task sst2 --holdout 2000 [--holdout-mode sentences] [--data-dir DIR]

For the seeded held-out split that ``--holdout N`` sets aside (the one candidates are chosen on) and for the
dev split: how many texts appear verbatim inside a training text (SST-2's training split is the phrases of
the parse trees of its sentences, so a random held-out phrase is usually a piece of a training phrase), how
many are exact duplicates, and their median length in words. Prints one JSON object. With ``--holdout-mode
sentences`` (whole sentences held out, their phrases dropped from training) the held-out split should look like dev.
"""

from __future__ import annotations

import argparse
import json
import statistics

from slimbert.data.tasks import get_task
from slimbert.training.settings import RunSettings
from slimbert.training.task_data import TaskDataset


def overlap(texts: list[str], training: list[str]) -> dict[str, float]:
    """Of ``texts``: how many occur inside some training text, how many equal one, and the median word count."""
    joined = "\n".join(training)  # one C-speed substring search per text instead of |texts| x |training| ones
    exact = set(training)
    inside = sum(1 for t in texts if t in joined)
    return {"examples": len(texts), "inside_a_training_text": inside,
            "inside_fraction": inside / len(texts) if texts else 0.0,
            "exact_duplicates": sum(1 for t in texts if t in exact),
            "median_words": statistics.median(len(t.split()) for t in texts) if texts else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--holdout", type=int, default=2000)
    parser.add_argument("--holdout-mode", default="random", choices=["random", "sentences"])
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    data = TaskDataset(get_task(args.task), RunSettings(data_dir=args.data_dir, holdout=args.holdout,
                                                             holdout_mode=args.holdout_mode))

    def text(example) -> str:
        return " ||| ".join(s.strip() for s in example.texts)

    training = [text(e) for e in data.train_examples(subsample=False)]
    dev_split = next(s for s in data.task.splits if s != "train")
    print(json.dumps({"task": data.task.name, "holdout": args.holdout, "holdout_mode": args.holdout_mode,
                      "training_examples": len(training),
                      "heldout": overlap([text(e) for e in data.heldout_examples()], training),
                      dev_split: overlap([text(e) for e in data.data.examples(dev_split)], training)}))


if __name__ == "__main__":
    main()
