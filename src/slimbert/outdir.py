"""Output directories: written by one run at a time, checked before any work, replaced only when safe.

* :class:`OutputLock`: an exclusive ``flock`` on ``.OUT.lock`` beside the output. The kernel releases
  it when its process dies (even by ``kill -9``), so a crashed run never blocks the next one, while a
  live run makes a second one stop at once with the other run's pid and command.
* :func:`check_writable`: the output's nearest existing ancestor must be a directory we can create
  files in, checked before a model is loaded.
* :func:`check_replaceable`: ``--overwrite`` never deletes the input model (or a directory holding
  it), nor a directory that is not a slimbert output.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

from slimbert.errors import SlimbertError


def sibling(out: Path, suffix: str) -> Path:
    """``.OUT<suffix>`` beside ``out`` (staging, work and lock directories live there)."""
    return out.parent / f".{out.name}{suffix}"


class OutputLock:
    """``with OutputLock(out):`` holds the output for this process; a second holder fails with a clear error."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = sibling(self.out, ".lock")
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SlimbertError(
                f"{self.out} is being written by another slimbert run ({holder}); wait for it to finish, or choose "
                "another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: no other run can be waiting on this file
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError):
        return "pid unknown"


def check_writable(out: Path) -> None:
    """Fail now, before any model is loaded, when ``out`` cannot be created or written."""
    out = Path(out).absolute()
    target = out
    while not target.exists():
        target = target.parent
    problem = None
    if not target.is_dir():
        problem = f"{target} is not a directory"
    else:
        try:
            with tempfile.NamedTemporaryFile(dir=target, prefix=".slimbert-write-test-"):
                pass
        except OSError as exc:
            problem = f"{target} is not writable ({exc.strerror})"
    if problem:
        raise SlimbertError(f"cannot write the output {out}: {problem}; choose another --out")


def _contains(parent: Path, child: Path) -> bool:
    return child == parent or parent in child.parents


def check_replaceable(out: Path, inputs: Iterable[str | os.PathLike | None], is_slimbert_output: bool) -> None:
    """Before ``--overwrite`` deletes anything: ``out`` must not be (or hold) an input, and must be ours."""
    out = Path(out).resolve()
    for spec in inputs:
        if spec is None:
            continue
        path = Path(spec).expanduser()
        if path.exists() and _contains(out, path.resolve()):
            raise SlimbertError(f"--out {out} holds the input model {path}: --overwrite would delete it; choose "
                                "another --out")
    if out.exists() and any(out.iterdir()) and not is_slimbert_output:
        raise SlimbertError(f"--out {out} exists and is not a slimbert output; --overwrite only replaces what slimbert "
                            "wrote. Choose another --out, or remove it yourself")


FINGERPRINT_NAME = "fingerprint.json"


def check_fingerprint(directory: Path, fingerprint: dict, what: str) -> None:
    """Resume or reuse ``directory`` only for the run that made it.

    The first call writes ``fingerprint`` (what changes the result: model, task, recipe, training settings;
    never eval samples, threads or latency budgets) into ``directory``; later calls compare and raise a
    :class:`SlimbertError` naming every key that differs.
    """
    path = Path(directory) / FINGERPRINT_NAME
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        describe_mismatch(saved, fingerprint, f"{what} in {directory}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
    os.replace(tmp, path)


def describe_mismatch(saved: dict, now: dict, what: str) -> None:
    """Raise when ``saved`` and ``now`` differ, saying which keys and how."""
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if not keys:
        return
    parts = []
    for key in keys:
        parts.append(f"a different {key} ({_short(saved.get(key))} then, {_short(now.get(key))} now)")
    raise SlimbertError(f"{what} was made by another run with {'; '.join(parts)}. Rerun the same command to "
                        "resume or reuse it, or pass --overwrite to start over")


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."
