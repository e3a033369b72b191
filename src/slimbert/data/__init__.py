"""Tasks and data: the GLUE registry, loaders, tokenization and metrics."""

from slimbert.data.encoding import EncodedDataset, PadCollator, encode
from slimbert.data.loaders import DATA_ENV, Example, TaskData
from slimbert.data.metrics import compute_metrics
from slimbert.data.tasks import GLUE_TASKS, TaskSpec, get_task

__all__ = [
    "DATA_ENV", "GLUE_TASKS", "EncodedDataset", "Example", "PadCollator", "TaskData", "TaskSpec",
    "compute_metrics", "encode", "get_task",
]
