"""Which process am I? One run may span several processes (``accelerate launch``, many GPUs or nodes).

Every process trains; only the main one writes files (checkpoints, the model, reports) and holds the
output lock, and the others wait for it where its files are needed. In a single process these are
trivial: the process is the main one and there is nobody to wait for.
"""

from __future__ import annotations

import os


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _state():
    """Accelerate's process state, created as the training loop's Accelerator will create it (on CPU when
    ``ACCELERATE_USE_CPU`` is set), so both agree on the process group."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def is_main_process() -> bool:
    return _state().is_main_process if _launched() else True


def wait_for_everyone() -> None:
    """A barrier across the run's processes (no-op in a single process)."""
    if _launched():
        _state().wait_for_everyone()
