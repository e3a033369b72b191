"""Shared fixtures: tiny random BERT/RoBERTa/DistilBERT models, a tiny tokenizer, synthetic GLUE data.

Tiny configs follow DESIGN.md: hidden 32, 2 layers, 4 heads, FFN 37, vocab 99 -- odd sizes make
swapped dimensions fail loudly. Nothing here touches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import TINY_WORDS, make_tiny_model, make_tokenizer, write_tiny_glue  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch):
    """Tests choose their data explicitly; never inherit a developer's SLIMBERT_DATA."""
    monkeypatch.delenv("SLIMBERT_DATA", raising=False)
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer(path)
    return path


@pytest.fixture(scope="session", params=["bert", "roberta", "distilbert"])
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tokenizer_dir) -> dict[str, Path]:
    """A saved tiny 2-label model directory per architecture."""
    dirs = {}
    for name in ("bert", "roberta", "distilbert"):
        path = tmp_path_factory.mktemp(f"tiny-{name}")
        make_tiny_model(name, path, tokenizer_dir)
        dirs[name] = path
    return dirs


@pytest.fixture(scope="session")
def tiny_bert_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs["bert"]


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory) -> Path:
    """Synthetic SST-2 / MRPC / STS-B / CoLA directories a tiny model can learn."""
    path = tmp_path_factory.mktemp("glue")
    write_tiny_glue(path)
    return path


def real_glue_dir() -> Path | None:
    """The real GLUE copy: $SLIMBERT_DATA_REAL, else ../shared/data/glue beside the repository."""
    candidates = [os.environ.get("SLIMBERT_DATA_REAL"), REPO.parent / "shared" / "data" / "glue"]
    for c in candidates:
        if c and (Path(c) / "SST-2" / "dev.tsv").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def real_glue() -> Path:
    path = real_glue_dir()
    if path is None:
        pytest.skip("real GLUE data not found (../shared/data/glue or $SLIMBERT_DATA_REAL)")
    return path


__all__ = ["TINY_WORDS"]


# The method x architecture matrix (test_method_matrix.py) may not skip a case: a skipped case is an untested method.
_MATRIX_SKIPS: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and report.nodeid.startswith("tests/test_method_matrix.py"):
        _MATRIX_SKIPS.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _MATRIX_SKIPS:
        print("\nmethod matrix cases were skipped (every case must run):\n  " + "\n  ".join(_MATRIX_SKIPS))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
