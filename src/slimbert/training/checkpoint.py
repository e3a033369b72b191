"""Atomic, pickle-free training checkpoints for resume after an interruption (even kill -9).

Layout in the run directory::

    checkpoints/step-000120/   model.safetensors, optimizer.pt, rng.safetensors, state.json
    checkpoints/LATEST         name of the newest complete checkpoint (replaced atomically)
    best.safetensors           weights of the best evaluation so far (replaced atomically)

A checkpoint directory is written completely before LATEST points to it, so a crash during a
save leaves the previous checkpoint in charge. The optimizer state is loaded with
``torch.load(weights_only=True)`` (plain tensors and numbers, no arbitrary pickles).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

LATEST = "LATEST"


def _contiguous_state(module: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; checkpoints are private, so copy.
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_weights(module: nn.Module, path: Path) -> None:
    """Write ``module``'s state dict to ``path`` atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(_contiguous_state(module), str(tmp))
    os.replace(tmp, path)


def load_weights(module: nn.Module, path: Path) -> None:
    module.load_state_dict(load_file(str(path)))


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, module: nn.Module, optimizer, scheduler, state: dict[str, Any],
                    callbacks_state: list[dict[str, Any]], keep: int = 1) -> Path:
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    target = ckpt_root / name
    tmp = ckpt_root / (name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_contiguous_state(module), str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    save_file(rng, str(tmp / "rng.safetensors"))
    _write_json(tmp / "state.json", {"trainer": state, "scheduler": scheduler.state_dict(), "callbacks": callbacks_state})
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    (ckpt_root / (LATEST + ".tmp")).write_text(name)
    os.replace(ckpt_root / (LATEST + ".tmp"), ckpt_root / LATEST)
    # Drop older checkpoints (the newest `keep` stay).
    old = sorted(p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, module: nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore module, optimizer, scheduler and RNG from ``path``; return the saved state.json.

    The restored global RNG state makes dropout masks after a resume identical to an
    uninterrupted run (the loop's DataLoader has its own generator, so iterating does not draw
    from the global RNG).
    """
    module.load_state_dict(load_file(str(path / "model.safetensors")))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    saved = json.loads((path / "state.json").read_text())
    scheduler.load_state_dict(saved["scheduler"])
    _restore_rng(load_file(str(path / "rng.safetensors")))
    return saved


def _restore_rng(rng: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
