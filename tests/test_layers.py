"""The layer contracts (pyproject.toml [tool.importlinter]) hold, and import-linter really enforces each one.

dashboard -> train -> eval -> core; inside core, synth -> lab -> the models, data and box operations;
streamlit only in the pages; core without runtimes, pandas or plotly; no cycles between sibling packages.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "eval", "train", "dashboard")
CONTRACTS = 5


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports from the interpreter's own environment (the venv in CI), on the packages in `cwd`."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from importlinter.cli import lint_imports_command;"
                                                                 "lint_imports_command()"]
    return subprocess.run([*cmd, "--no-cache", "--config", str(cwd / "pyproject.toml")], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_layer_contracts_are_kept() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert f"Contracts: {CONTRACTS} kept, 0 broken" in out.stdout


def _copy(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


# (file planted in a copy of the tree, its one import, the contract it must break, the import lint-imports names;
# for a cycle, either edge)
PLANTED = [
    ("eval/_bad_up.py", "import dashboard.logic.inventory\n", "Layers: dashboard -> train -> eval -> core",
     "eval._bad_up -> dashboard.logic.inventory"),
    ("core/boxes/_bad_lab.py", "import core.lab.artifacts\n", "Inside core: synth -> lab",
     "core.boxes._bad_lab -> core.lab.artifacts"),
    ("dashboard/logic/_bad_ui.py", "import streamlit\n", "Only the pages import streamlit",
     "dashboard.logic._bad_ui -> streamlit"),
    ("core/lab/_bad_table.py", "import pandas\n", "core imports no runtime",
     "core.lab._bad_table -> pandas"),
    ("eval/runs/_bad_cycle.py", "import eval.deploy.export\n", "No import cycles between sibling packages",
     ".runs -> .deploy|.deploy -> .runs"),
]


@pytest.mark.parametrize(("path", "line", "contract", "shown"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_violation_breaks_its_contract(tmp_path: Path, path: str, line: str, contract: str,
                                                 shown: str) -> None:
    """One forbidden import in a copy of the tree: lint-imports fails, on that contract, naming the import."""
    root = _copy(tmp_path)
    (root / path).write_text(line)
    if path == "eval/runs/_bad_cycle.py":  # close the loop: deploy already reads what runs reads
        (root / "eval/deploy/_bad_back.py").write_text("import eval.runs.event_files\n")
    out = lint_imports(root)
    assert out.returncode != 0
    assert f"Contracts: {CONTRACTS - 1} kept, 1 broken" in out.stdout, out.stdout[-4000:]
    broken = out.stdout[out.stdout.index("Broken contracts"):]
    assert contract in broken and any(s in broken for s in shown.split("|")), broken[-3000:]
