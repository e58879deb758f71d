"""Every command in README.md and docs/*.md runs as written after the install command.

Shell commands are taken from the fenced code blocks (bash, sh, console or no language) and from inline
code that starts with a program. Each must name the venv's program (`.venv/bin/python -m ...`, never a bare
`python`, `torchrun` or `tensorboard`), that program must exist, a `python -m` module must exist and its
parser (`build_parser()`, or `check_args` where the module validates more) must accept the flags shown:
a dry parse that does no work. Inline code is often a fragment with placeholders, so there only the flag
names are checked. The README's quick start also runs end to end on its own tiny synthetic set (slow).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.io.cli_paths import unchecked_paths

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
VENV_PROGRAMS = {"python", "python3", "torchrun", "tensorboard", "streamlit", "pip", "pytest", "ruff", "lint-imports"}
# Programs a reader runs outside the venv: the cluster's and the system's own.
SYSTEM_PROGRAMS = {"sbatch", "srun", "squeue", "sacct", "scancel", "scontrol", "git", "cd", "export", "bash", "ls",
                   "cat", "cp", "mkdir", "nvidia-smi", "sha256sum", "tar", "du"}
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"(?<!`)`((?:[^`\n]|\n(?!\s*\n))+)`(?!`)")  # may wrap onto the next line
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


@dataclass(frozen=True)
class Command:
    """One shell command as a reader would paste it, with where it was found."""

    text: str
    source: str  # "README.md:123"
    inline: bool


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def block_commands(body: str, name: str, first_line: int) -> list[Command]:
    """The commands of one code block: continuations joined, comments and blank lines dropped."""
    out, pending, start = [], "", 0
    for offset, line in enumerate(body.splitlines()):
        stripped = line.strip().removeprefix("$ ")
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        start = start if pending else offset
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        out.append(Command(pending, f"{name}:{first_line + start}", inline=False))
        pending = ""
    return out


def extract_commands(path: Path) -> list[Command]:
    """Commands of a Markdown file: every line of its shell code blocks and every inline code span that
    starts with a program."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix()
    out: list[Command] = []
    blocks = []
    for match in _FENCE.finditer(text):
        blocks.append(match.span())
        if match.group(1).lower() in SHELL_LANGS:
            out += block_commands(match.group(2), name, _line_of(text, match.start(2)))
    for match in _INLINE.finditer(text):
        if any(a <= match.start() < b for a, b in blocks):
            continue
        span = " ".join(match.group(1).split())
        words = span.split()
        if len(words) > 1 and (words[0].startswith(".venv/bin/") or words[0] in VENV_PROGRAMS):  # not a bare name
            out.append(Command(span, f"{name}:{_line_of(text, match.start())}", inline=True))
    return out


def split_commands(text: str) -> list[list[str]]:
    """Shell words of each simple command (`a && b; c | d` gives three), trailing comments dropped."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    parts, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            parts.append(current)
            current = []
        else:
            current.append(token)
    return [p for p in [*parts, current] if p]


def _module_parser(module: str):
    """(parser or check function, error) for `python -m module`: the module must exist and expose one."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        return None, f"no module {module!r} ({exc})"
    if spec is None:
        return None, f"no module {module!r}"
    target = f"{module}.__main__" if spec.submodule_search_locations else module
    try:
        mod = importlib.import_module(target)
    except Exception as exc:  # noqa: BLE001 - any import failure is a broken command
        return None, f"module {target} does not import ({type(exc).__name__}: {exc})"
    if hasattr(mod, "check_args"):
        return mod.check_args, None
    if hasattr(mod, "build_parser"):
        return mod.build_parser, None
    return None, f"module {target} has no build_parser() to check its flags with"


def _flag_names(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def check_python_module(module: str, args: list[str], inline: bool) -> str | None:
    """None when `python -m module args` would parse, else why not."""
    if module in ("pytest", "venv", "pip"):
        return None
    entry, error = _module_parser(module)
    if error:
        return error
    if "--help" in args or "-h" in args:
        return None
    if inline:  # a fragment: only the flag names must exist
        parser = entry() if entry.__name__ == "build_parser" else importlib.import_module(
            entry.__module__).build_parser()
        known = _flag_names(parser)
        unknown = [a.split("=")[0] for a in args if a.startswith("--") and a.split("=")[0] not in known]
        if entry.__name__ == "check_args" and module == "train.study.run":
            from train.cli import build_parser as train_parser

            unknown = [a for a in unknown if a not in _flag_names(train_parser())]
        return f"unknown flag(s) {unknown}" if unknown else None
    err = io.StringIO()
    try:
        # unchecked_paths: the files a documented command names are the reader's, not this checkout's
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), unchecked_paths():
            if entry.__name__ == "check_args":
                entry(args)
            else:
                entry().parse_args(args)
    except SystemExit as exc:
        return f"rejected (exit {exc.code}): {err.getvalue().strip().splitlines()[-1:] or ''}"
    except Exception as exc:  # noqa: BLE001 - a validation error is a broken command
        return f"rejected: {type(exc).__name__}: {exc}"
    return None


def check_words(words: list[str], inline: bool) -> str | None:
    """None when one simple command would run as written after the install, else the reason."""
    while words and _ENV.match(words[0]):
        words = words[1:]
    if not words:
        return None
    program, args = words[0], words[1:]
    if program in VENV_PROGRAMS:
        if program == "python3" and args[:2] == ["-m", "venv"]:
            return None  # the install command itself makes the venv
        return f"bare {program!r}: the install puts it in .venv/bin/ (write .venv/bin/{program})"
    if program.startswith(".venv/bin/"):
        name = program.removeprefix(".venv/bin/")
        if not (VENV_BIN / name).exists():
            return f"{program} does not exist after the install"
        if name in ("python", "python3"):
            if args[:1] != ["-m"] or len(args) < 2:
                return f"{program} without -m <module>" if args[:1] == ["-m"] or not args else None
            return check_python_module(args[1], args[2:], inline)
        if name == "torchrun":
            from torch.distributed.run import get_args_parser

            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    parsed = get_args_parser().parse_args(args)
            except SystemExit:
                return "torchrun rejects its own options"
            if not parsed.module:
                return "torchrun without -m <module>"
            return check_python_module(parsed.training_script, list(parsed.training_script_args), inline)
        if name == "streamlit":
            return _check_streamlit(args, inline)
        if name == "tensorboard":
            return None if inline or "--logdir" in args else "tensorboard without --logdir"
        return None
    if program in SYSTEM_PROGRAMS or shutil.which(program):
        return None
    return f"unknown program {program!r}"


def _check_streamlit(args: list[str], inline: bool) -> str | None:
    if args[:1] != ["run"] or len(args) < 2:
        return "streamlit without run <app>"
    if not (ROOT / args[1]).is_file():
        return f"streamlit app {args[1]} not found"
    app_args = args[args.index("--") + 1:] if "--" in args else []
    own = [a for a in args[2:args.index("--")] if "--" in args] if "--" in args else args[2:]
    bad = [a for a in own if a.startswith("--") and "." not in a.split("=")[0]]
    if bad:
        return f"not streamlit options (use --section.option): {bad}"
    known = {"--results-dir", "--runs-dir"}  # core.lab.roots.resolve_roots
    unknown = [a for a in app_args if a.startswith("--") and a.split("=")[0] not in known]
    return f"unknown dashboard flag(s) {unknown}" if unknown else None


def check_command(command: Command) -> list[str]:
    """Every problem of one command, each naming where it is."""
    try:
        parts = split_commands(command.text)
    except ValueError as exc:
        return [f"{command.source}: unparsable shell ({exc}): {command.text}"]
    problems = []
    for words in parts:
        reason = check_words(words, command.inline)
        if reason:
            problems.append(f"{command.source}: {reason}: {command.text}")
    return problems


def all_commands() -> list[Command]:
    return [c for path in DOCS for c in extract_commands(path)]


# Tests


def test_docs_have_commands_to_check():
    commands = all_commands()
    readme = [c for c in commands if c.source.startswith("README.md") and not c.inline]
    assert len(readme) >= 8 and len(commands) > len(readme)


def test_every_documented_command_runs_as_written():
    problems = [p for c in all_commands() for p in check_command(c)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("text, expected", [
    ("python -m train --network cbam", "bare 'python'"),
    ("torchrun --nproc_per_node 2 -m train --network cbam", "bare 'torchrun'"),
    ("tensorboard --logdir runs", "bare 'tensorboard'"),
    (".venv/bin/python -m", "without -m <module>"),
    (".venv/bin/python -m eval.no_such_module --x 1", "no module 'eval.no_such_module'"),
    (".venv/bin/python -m eval.detect --weights w.pth --images d --no-such-flag", "rejected"),
    (".venv/bin/python -m train --network cbam --max-epoch many", "rejected"),
    (".venv/bin/torchrun --nproc_per_node 2 -m train --network nope", "rejected"),
    (".venv/bin/streamlit run dashboard/app.py -- --result-dir x", "unknown dashboard flag"),
    (".venv/bin/python -m train.study --models cbam --seeds 0 --data d --out r --name s --bogus 1", "rejected"),
    (".venv/bin/nosuchprogram --help", "does not exist"),
])
def test_the_checker_fails_on_broken_commands(text, expected):
    problems = check_command(Command(text, "test", inline=False))
    assert problems and expected in problems[0]


def test_the_checker_accepts_working_commands():
    good = [".venv/bin/python -m eval.detect --weights w.pth --images assets/samples --out d --masks",
            ".venv/bin/torchrun --nproc_per_node 4 -m train --network cbam --batch-size 32",
            "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && .venv/bin/python -m pytest -q",
            "OMP_NUM_THREADS=1 .venv/bin/python -m train --network cbam  # a trailing comment"]
    for text in good:
        assert check_command(Command(text, "test", inline=False)) == [], text
    assert check_command(Command(".venv/bin/python -m eval.predict --top-k 0 --keep-top-k 0", "t", inline=True)) == []
    assert check_command(Command(".venv/bin/python -m eval.predict --top-kk 0", "t", inline=True))


def test_no_virtual_environment_is_tracked():
    """A worktree's .venv symlink, once committed, replaced the shared venv on checkout: keep it out of git."""
    tracked = subprocess.run(["git", "ls-files", ".venv", "venv"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert tracked.stdout.strip() == ""


# The quick start


def quick_start() -> list[str]:
    """The README's quick-start commands, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = _FENCE.search(section)
    assert block is not None, "no code block under '## Quick start'"
    return [c.text for c in block_commands(block.group(2), "README.md", 0)]


def test_quick_start_fits_the_first_screen():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = _FENCE.search(section)
    assert len(block.group(2).splitlines()) <= 15
    assert _line_of(text, text.index("## Quick start")) < 60  # near the top


@pytest.mark.slow
def test_quick_start_runs_end_to_end(tmp_path):
    """Every quick-start line, as written, in a scratch folder that sees the repository's code and assets
    (so data/, runs/, results/ and detections/ land there); the dashboard line is checked to open on them."""
    for name in ("core", "eval", "train", "dashboard", "assets", ".venv"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a small shared CPU: one thread per process
    env.pop("FEATHERFACE_DEVICE", None)
    times = []
    for line in quick_start():
        start = time.perf_counter()
        if ".venv/bin/streamlit" in line:
            from core.lab.roots import resolve_roots

            assert check_command(Command(line, "quick start", False)) == []
            roots = resolve_roots(shlex.split(line)[3:], {}, repo_root=tmp_path)
            assert roots.results == (tmp_path / "results").resolve()  # it opens on what the quick start made
            continue
        proc = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        times.append((time.perf_counter() - start, line))
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    results = tmp_path / "results"
    assert (results / "comparison_table.csv").is_file() and (results / "conclusion.md").is_file()
    assert list((results / "compare_ap").glob("*.json"))  # the comparison the conclusion reads
    assert "compare_ap" in (results / "conclusion.md").read_text()
    assert (tmp_path / "detections" / "detections.json").is_file()
    total = sum(t for t, _ in times)
    print(f"\nquick start: {total:.1f} s wall in all\n" + "\n".join(f"{t:6.1f} s  {line}" for t, line in times))
