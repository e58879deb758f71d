"""The layer contract (pyproject.toml [tool.importlinter]) holds, and import-linter really enforces it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "eval", "train", "dashboard")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports from the interpreter's own environment (the venv in CI), on the packages in `cwd`."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from importlinter.cli import lint_imports_command;"
                                                                 "lint_imports_command()"]
    return subprocess.run([*cmd, "--no-cache", "--config", str(cwd / "pyproject.toml")], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_layer_contract_is_kept() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken" in out.stdout


def test_a_violation_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the tree with core importing streamlit and eval importing the dashboard fails both."""
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "core" / "_bad_ui.py").write_text("import streamlit\n")
    (tmp_path / "eval" / "_bad_up.py").write_text("import dashboard.common\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0
    assert "Contracts: 0 kept, 2 broken" in out.stdout, out.stdout[-4000:]
    assert "core._bad_ui -> streamlit" in out.stdout and "eval._bad_up -> dashboard.common" in out.stdout
