"""The README's two set-up commands are real, and CI runs the test one verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "streamlit run dashboard/app.py" in commands[0]
    assert "pytest" in commands[1]
    for command in commands:
        assert "pip install" in command and "requirements.txt" in command


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci_lines


def test_requirements_are_pinned():
    lines = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all("==" in ln for ln in lines)
    names = {ln.split("==")[0] for ln in lines}
    assert {"torch", "torchvision", "streamlit", "tbparse", "opencv-python-headless"} <= names


def _collected(*args: str) -> set[str]:
    files = ["tests/dashboard/test_browser.py", "tests/test_readme.py"]
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files, *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    return {line for line in out.splitlines() if "::" in line}


@pytest.mark.slow
def test_quick_loop_marker_skips_only_the_browser_test_and_ci_keeps_it():
    readme = (ROOT / "README.md").read_text()
    assert '-m "not browser"' in readme
    assert " -m " not in _readme_commands()[1].split("-m pytest", 1)[1]  # CI selects every test, browser included
    everything, quick = _collected(), _collected("-m", "not browser")  # unknown markers fail collection
    browser = everything - quick
    assert browser and {b.split("::")[0] for b in browser} == {"tests/dashboard/test_browser.py"}
    assert quick < everything and "tests/test_readme.py::test_ci_runs_the_readme_test_command" in quick
