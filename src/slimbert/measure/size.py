"""Parameter counts and weight sizes, with and without embeddings (the survey reports both).

Counts are *logical*: a packed or int8 matrix counts the weights it stands for
(``logical_params()`` of compressed module kinds), while byte sizes count actual storage.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from slimbert.models.structure import arch_of

MB = 1e6  # sizes are reported in decimal megabytes


def _walk(model: nn.Module):
    """(name, module, is_compressed) for modules whose weights are counted, not descending into compressed kinds."""
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in skip):
            continue
        compressed = hasattr(module, "logical_params")
        if compressed and name:
            skip.append(name + ".")
        yield name, module, compressed


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``total``, ``no_embeddings`` and ``nonzero`` weights of ``model``.

    Only parameters count for plain modules (buffers such as position ids are not weights); a
    compressed module reports its own logical count.
    """
    embeddings_prefix = arch_of(model).embeddings + "."
    total = no_emb = nonzero = 0
    for name, module, compressed in _walk(model):
        if compressed:
            n, nz = module.logical_params(), module.logical_nonzero()
        else:
            params = list(module.parameters(recurse=False))
            n = sum(p.numel() for p in params)
            nz = sum(int((p != 0).sum()) for p in params)
        total += n
        nonzero += nz
        if not (name + ".").startswith(embeddings_prefix):
            no_emb += n
    return {"total": total, "no_embeddings": no_emb, "nonzero": nonzero}


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of stored weights: ``total`` and ``no_embeddings`` (parameters + compressed buffers)."""
    embeddings_prefix = arch_of(model).embeddings + "."
    total = no_emb = 0
    for name, module, compressed in _walk(model):
        tensors = (list(module.parameters()) + [b for b in module.buffers() if b is not None]) if compressed \
            else list(module.parameters(recurse=False))
        n = sum(t.numel() * t.element_size() for t in tensors)
        total += n
        if not (name + ".").startswith(embeddings_prefix):
            no_emb += n
    return {"total": total, "no_embeddings": no_emb}


def file_size(path: str | os.PathLike) -> int:
    """Bytes on disk of a file, or of all files under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
