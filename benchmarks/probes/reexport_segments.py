"""Re-export an adaptive artifact's ONNX Runtime segments (``adaptive/``) with the current exporter, in place.

    python benchmarks/probes/reexport_segments.py runs/bench/early-exit-entropy-sst2 [...]

Used when the segment format changes (``slimbert-segments/2`` fuses the attention of every layer that token
dropping does not score) to time existing artifacts again without retraining them: the weights, the exit heads
and the adaptive settings are read from the artifact and left as they are. Prints each export's notes and its
full-depth logit difference against the PyTorch model.
"""

from __future__ import annotations

import argparse
import json

from slimbert.export.onnx_segments import export_segments
from slimbert.models.artifact import load_compressed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+")
    args = parser.parse_args()
    for artifact in args.artifacts:
        result = export_segments(load_compressed(artifact), artifact)
        print(json.dumps({"artifact": artifact, "max_abs_diff": result.max_abs_diff, "fused_ops": result.fused_ops,
                          "transforms": result.transforms, "notes": result.notes}))


if __name__ == "__main__":
    main()
