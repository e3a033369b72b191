"""The import graph is layered and acyclic (import-linter contracts in pyproject.toml), and stays honest:
no ignored imports, TYPE_CHECKING imports counted, every module in a layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_contracts_ignore_nothing_and_cover_every_module():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert not config.get("exclude_type_checking_imports", False)
    contracts = _contracts()
    assert not any(c.get("ignore_imports") for c in contracts)
    kinds = {c["type"] for c in contracts}
    assert {"layers", "acyclic_siblings"} <= kinds
    top = next(c for c in contracts if c["type"] == "layers" and c["containers"] == ["slimbert"])
    assert top.get("exhaustive") is True
    listed = {name.strip() for layer in top["layers"] for name in layer.replace(":", "|").split("|")}
    children = {p.stem if p.is_file() else p.name for p in (REPO / "src" / "slimbert").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").is_file())}
    assert children == listed  # the contract's layers name exactly the package's modules
