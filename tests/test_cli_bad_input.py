"""Every ``python -m`` entry point against a matrix of bad paths and missing flags (issue 20).

Entry points are discovered from the source (a module under core/, eval/, train/ or benchmarks/ with an
``if __name__ == "__main__"`` guard, or a package's ``__main__.py``) and compared with `COMMANDS`: a new
command that is not declared there fails `test_every_entry_point_is_declared`. The path flags of each
command are read from its own parser (captured while its ``main`` parses), so a new flag is covered
the moment it exists; a path-like flag without a `core.cli_paths` type fails `test_path_flags_use_cli_paths`.

Each case runs the command in-process (``main(argv)``, SystemExit caught, stdout/stderr captured) with a
baseline command line whose other paths are fine, and one path replaced by a bad one, or one required
flag left out. It asserts: a non-zero exit, no "Traceback", exactly one line on stderr naming the flag or
the path, and every file that existed before (pre-existing outputs included) byte-identical after, with
nothing new created. A few cases also run as real subprocesses, to prove nothing escapes at top level.

Running as root (CI does), ``chmod 000`` does not stop a read, so the "unreadable" cases skip with that
reason; the permission check itself is tested with a denied ``os.access`` in test_cli_paths.py. The
"read-only place" cases need a folder on a read-only mount (/proc/sys on Linux) and skip without one.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.io.cli_paths import CliParser, PathArg

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "eval", "train", "benchmarks")
ODD = "dossier à espaces/visage été ☃"  # spaces and non-ASCII characters in a folder and a file name
PATHY = {"--out", "--json", "--results", "--data", "--weights-dir", "--weights", "--gt", "--image", "--images",
         "--pred", "--pred-a", "--pred-b", "--runs", "--status", "--trained-model", "--resume", "--backbone-weights"}


@dataclass(frozen=True)
class Command:
    """How to run one entry point in-process, and what its baseline command line needs besides paths."""

    main: str | None  # "module:function"; None: the command takes no arguments at all (`no_args` says why)
    base: dict[str, tuple[str, ...]] = field(default_factory=dict)  # non-path flags of every run
    groups: tuple[tuple[str, ...], ...] = ()  # alternative sets of path flags (default: all of them together)
    required: tuple[str, ...] = ()  # flags the command itself requires, beyond argparse's required=True
    no_args: str = ""


NETWORK = {"--network": ("cbam",)}
COMMANDS: dict[str, Command] = {
    "core.data.synth": Command("core.data.synth:main"),
    "core.synth": Command("core.synth.__main__:main"),
    "eval.attention_stats": Command("eval.attention_stats:main"),
    "eval.compare_ap": Command("eval.compare_ap:main", groups=(("--pred-a", "--pred-b", "--gt", "--json"),
                                                               ("--results",)),
                               required=("--pred-a", "--pred-b")),
    "eval.conclusion": Command("eval.conclusion:main"),
    "eval.detect": Command("eval.detect:main", groups=(("--weights", "--image", "--out"), ("--weights", "--images")),
                           required=("--image",)),
    "eval.export": Command("eval.export:main", base=NETWORK),
    "eval.figures": Command("eval.figures:main", base=NETWORK),
    "eval.import_featherface": Command("eval.import_featherface:main"),
    "eval.import_retinaface": Command("eval.import_retinaface:main"),
    "eval.latency": Command("eval.latency.__main__:main"),
    "eval.predict": Command("eval.predict:main", base=NETWORK),
    "eval.reference": Command("eval.reference:main"),
    "eval.reference_assets": Command("eval.reference_assets:main"),
    "eval.results": Command("eval.results:main"),
    "eval.widerface": Command("eval.widerface.__main__:main"),
    "train": Command("train.cli:main", base=NETWORK, required=("--network",)),
    "train.demo": Command("train.demo:main", base={"--eval-only": ()}),  # --from is read with --eval-only
    "train.pretrain_backbone": Command("train.pretrain_backbone:main"),
    "train.recipe_card": Command("train.recipe_card:main"),
    "train.study": Command("train.study.__main__:main", base={"--models": ("cbam",), "--executor": ("local",)},
                           groups=(("--data", "--out"), ("--status",)), required=("--models", "--data")),
    "benchmarks.bench_compare_ap": Command("benchmarks.bench_compare_ap:main"),
    "benchmarks.bench_dashboard": Command("benchmarks.bench_dashboard:main"),
    "benchmarks.bench_deploy": Command("benchmarks.bench_deploy:main"),
    "benchmarks.bench_evaluator": Command("benchmarks.bench_evaluator:main"),
    "benchmarks.bench_label_reader": Command("benchmarks.bench_label_reader:main"),
    "benchmarks.bench_latency_precision": Command("benchmarks.bench_latency_precision:main"),
    "benchmarks.bench_matching_loss": Command("benchmarks.bench_matching_loss:main"),
    "benchmarks.bench_model_latency": Command("benchmarks.bench_model_latency:main"),
    "benchmarks.bench_nms": Command("benchmarks.bench_nms:main"),
    "benchmarks.bench_train_throughput": Command("benchmarks.bench_train_throughput:main"),
}

CELLS = {  # bad values per role; "odd name" is the first kind again, at a path with spaces and non-ASCII
    "input_file": ("a folder", "missing", "empty", "unreadable", "odd name"),
    "input_dir": ("a file", "missing", "empty", "unreadable", "odd name"),
    "input_path": ("missing", "empty file", "empty folder", "unreadable", "odd name"),
    "output_file": ("a folder", "parent is a file", "read-only place", "odd name"),
    "output_dir": ("a file", "parent is a file", "read-only place", "odd name"),
}


# Discovery


def discover_entry_points() -> set[str]:
    """Modules run with ``python -m``: a ``__main__`` guard at module level, or a package's ``__main__.py``."""
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if path.name == "__main__.py":
                found.add(".".join(parts[:-1]))
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in \
                        ast.unparse(node.test):
                    found.add(".".join(parts))
    return found


class _Captured(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, parser: CliParser) -> None:
        self.parser = parser


def main_of(name: str) -> Callable[[list[str]], int | None]:
    module, function = COMMANDS[name].main.split(":")  # type: ignore[union-attr]
    return getattr(importlib.import_module(module), function)


def parser_of(name: str) -> CliParser:
    """The command's own parser, caught as its main starts parsing (no refactoring of the commands needed)."""
    original = CliParser.parse_known_args

    def capture(self: CliParser, *args: object, **kwargs: object) -> None:
        raise _Captured(self)

    CliParser.parse_known_args = capture  # type: ignore[method-assign]
    try:
        main_of(name)([])
    except _Captured as caught:
        return caught.parser
    finally:
        CliParser.parse_known_args = original  # type: ignore[method-assign]
    raise AssertionError(f"{name}: main() parsed no arguments with core.cli_paths.CliParser")


def path_flags(parser: CliParser) -> dict[str, tuple[str, object]]:
    """flag -> (role, default) for every option whose type is a core.cli_paths path type."""
    return {_long(a.option_strings): (a.type.role, a.default) for a in parser._actions if isinstance(a.type, PathArg)}


def _long(options: list[str]) -> str:
    return next((o for o in options if o.startswith("--")), options[0])


def required_flags(name: str, parser: CliParser) -> list[str]:
    declared = [_long(a.option_strings) for a in parser._actions if a.required and a.option_strings]
    return declared + [f for f in COMMANDS[name].required if f not in declared]


# Cases


def _groups(name: str, flags: dict[str, tuple[str, object]]) -> list[tuple[str, ...]]:
    return list(COMMANDS[name].groups) or [tuple(flags)]


def build_cases() -> list[tuple[str, str, str]]:
    """(command, flag or "", cell) for every path flag and every required flag of every runnable command."""
    cases = []
    for name in sorted(COMMANDS):
        if COMMANDS[name].main is None:
            continue
        parser = parser_of(name)
        flags = path_flags(parser)
        for flag, (role, default) in flags.items():
            cases += [(name, flag, cell) for cell in CELLS[role]]
            if role.startswith("input") and default is not None and not Path(str(default)).is_absolute():
                cases.append((name, flag, "default missing"))  # left out, its default absent from the cwd
        cases += [(name, flag, "required missing") for flag in required_flags(name, parser)]
    return cases


CASES = build_cases()


def read_only_place() -> Path | None:
    """A folder on a read-only mount, where even root cannot create anything (None where there is none)."""
    for candidate in ("/proc/sys", "/sys/kernel"):
        if Path(candidate).is_dir() and not os.access(candidate, os.W_OK):
            return Path(candidate)
    return None


def baseline_value(tmp: Path, flag: str, role: str) -> Path:
    """A path that passes the flag's checks; outputs exist already, with content that must survive."""
    name = flag.lstrip("-")
    if role == "input_file":
        path = tmp / "in" / f"{name}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not empty\n")
    elif role in ("input_dir", "input_path"):
        path = tmp / "in" / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "keep.txt").write_text("not empty\n")
    elif role == "output_file":
        path = tmp / "out" / f"{name}.previous"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"pre-existing output of {flag}\n")
    else:
        path = tmp / "out" / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "previous.txt").write_text(f"pre-existing output of {flag}\n")
    return path


def bad_value(tmp: Path, role: str, cell: str) -> Path:
    """The bad path of one cell, made on disk as the cell says (pre-existing content included)."""
    bad = tmp / "bad"
    bad.mkdir(exist_ok=True)
    if cell == "odd name":
        target = tmp / ODD
        target.parent.mkdir(parents=True, exist_ok=True)
        if role == "output_file":
            target.mkdir()
            (target / "previous.txt").write_text("kept\n")
        elif role == "output_dir":
            target.write_text("a file that must survive\n")
        return target  # inputs: missing
    if cell in ("a folder",):
        (bad / "a folder").mkdir()
        (bad / "a folder" / "previous.txt").write_text("kept\n")
        return bad / "a folder"
    if cell == "a file":
        (bad / "a file.txt").write_text("a file that must survive\n")
        return bad / "a file.txt"
    if cell == "missing":
        return bad / "no such folder" / "nothing.pth"
    if cell in ("empty", "empty file", "empty folder"):
        if role == "input_dir" or cell == "empty folder":
            (bad / "empty").mkdir()
        else:
            (bad / "empty").write_bytes(b"")
        return bad / "empty"
    if cell == "unreadable":
        target = bad / "locked"
        if role == "input_file":
            target.write_bytes(b"secret\n")
        else:
            target.mkdir()
            (target / "inside.txt").write_text("x\n")
        target.chmod(0)
        if os.access(target, os.R_OK):
            target.chmod(stat.S_IRWXU)
            pytest.skip("running as root: chmod 000 does not stop root from reading, so nothing is unreadable "
                        "here (the os.access check is tested with a denied access in test_cli_paths.py)")
        return target
    if cell == "parent is a file":
        (bad / "a file.txt").write_text("a file that must survive\n")
        return bad / "a file.txt" / "out"
    if cell == "read-only place":
        place = read_only_place()
        if place is None:
            pytest.skip("no read-only mount here (/proc/sys is writable or absent)")
        return place / "featherface-test" / "out"
    raise AssertionError(cell)


def snapshot(tmp: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under tmp."""
    out: dict[str, bytes | None] = {}
    for path in sorted(tmp.rglob("*")):
        rel = path.relative_to(tmp).as_posix()
        if path.is_dir():
            out[rel + "/"] = None
        elif os.access(path, os.R_OK):
            out[rel] = path.read_bytes()
        else:
            out[rel] = b"<unreadable>"
    return out


def command_line(tmp: Path, name: str, flag: str, cell: str) -> tuple[list[str], str]:
    """(argv, the text the one-line error must name) for one case."""
    parser = parser_of(name)
    flags = path_flags(parser)
    group = next((g for g in _groups(name, flags) if flag in g), _groups(name, flags)[0])
    argv: list[str] = []
    for other, values in COMMANDS[name].base.items():
        if not (cell == "required missing" and other == flag):
            argv += [other, *values]
    named = flag
    for other in group:
        if cell in ("required missing", "default missing") and other == flag:
            continue
        role = flags[other][0]
        if other == flag and cell != "required missing":
            value = bad_value(tmp, role, cell)
            named = str(value)
        else:
            value = baseline_value(tmp, other, role)
        argv += [other, str(value)]
    return argv, named


def run_in_process(main: Callable[[list[str]], int | None], argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_one_line(stderr: str, flag: str, named: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert flag in lines[0] or named in lines[0], f"the line names neither {flag} nor {named!r}: {lines[0]}"


@pytest.mark.parametrize(("name", "flag", "cell"), CASES, ids=[f"{n} {f} {c}" for n, f, c in CASES])
def test_bad_input_stops_with_one_line_and_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           name: str, flag: str, cell: str) -> None:
    argv, named = command_line(tmp_path, name, flag, cell)
    if cell == "default missing":
        monkeypatch.chdir(tmp_path)  # relative defaults (data/synth, runs/, results/) point at nothing here
    before = snapshot(tmp_path)
    try:
        code, _, stderr = run_in_process(main_of(name), argv)
    finally:
        for path in tmp_path.rglob("*"):  # undo chmod 000 so the checks below and the cleanup can read
            if not path.is_symlink():
                path.chmod(stat.S_IRWXU)
    assert code != 0, f"{name} {' '.join(argv)} exited 0"
    check_one_line(stderr, flag, named)
    assert snapshot(tmp_path) == before, "a file was created, changed or removed"


# The table stays complete


def test_every_entry_point_is_declared() -> None:
    found = discover_entry_points()
    undeclared = sorted(found - set(COMMANDS))
    assert not undeclared, (f"new python -m entry point(s) {undeclared}: add each to COMMANDS in "
                            "tests/test_cli_bad_input.py (its non-path flags and required flags), and give its path "
                            "flags a core.cli_paths type (input_file, input_dir, input_path, output_file, output_dir)")
    stale = sorted(set(COMMANDS) - found)
    assert not stale, f"COMMANDS lists {stale}, which are no longer entry points: remove them"


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if COMMANDS[n].main))
def test_path_flags_use_cli_paths(name: str) -> None:
    """Every path flag goes through core.cli_paths (pre-flight checks, one-line errors): none is a bare Path
    or str, so nothing is read or written before the path was checked."""
    parser = parser_of(name)
    assert isinstance(parser, CliParser)
    bare = [_long(a.option_strings) for a in parser._actions if a.option_strings and not isinstance(a.type, PathArg)
            and (a.type is Path or (a.type in (None, str) and _long(a.option_strings) in PATHY))
            and a.nargs != 0]
    assert not bare, f"{name}: {bare} take a path without a core.cli_paths type"
    for flag in COMMANDS[name].base:
        assert any(flag in a.option_strings for a in parser._actions), f"{name}: COMMANDS names unknown {flag}"


def test_commands_without_arguments_really_take_none() -> None:
    for name, command in COMMANDS.items():
        if command.main is None:
            text = (ROOT / Path(*name.split("."))).with_suffix(".py").read_text(encoding="utf-8")
            assert "argparse" not in text and "sys.argv" not in text, f"{name} reads arguments: declare its main"
            assert command.no_args


def test_matrix_covers_every_role_and_kind_of_bad_input() -> None:
    cells = {cell for _, _, cell in CASES}
    assert cells == {c for kinds in CELLS.values() for c in kinds} | {"required missing", "default missing"}
    assert len({name for name, _, _ in CASES}) == sum(1 for c in COMMANDS.values() if c.main)


# Real processes


SUBPROCESS_CASES = {  # case -> (the flag the line must name, python -m command line)
    "an output file that is a folder": ("--out", ["eval.reference", "--out", "{tmp}/a folder"]),
    "a results folder that is a file": ("--results", ["eval.conclusion", "--results", "{tmp}/a file.txt", "--out",
                                                      "{tmp}/c.md"]),
    "a missing dataset, odd name": ("--data", ["train", "--network", "cbam", "--data", "{tmp}/" + ODD]),
    "slurm without its tools": ("--executor", ["train.study", "--models", "cbam", "--data", "{tmp}/a folder",
                                               "--out", "{tmp}/runs", "--executor", "slurm"]),
}


@pytest.mark.parametrize("case", sorted(SUBPROCESS_CASES))
def test_real_process_prints_one_line_and_no_traceback(tmp_path: Path, case: str) -> None:
    (tmp_path / "a folder").mkdir()
    (tmp_path / "a folder" / "previous.txt").write_text("kept\n")
    (tmp_path / "a file.txt").write_text("kept\n")
    before = snapshot(tmp_path)
    flag, (module, *args) = SUBPROCESS_CASES[case]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if case == "slurm without its tools":
        env["PATH"] = str(tmp_path / "empty-bin")  # no sbatch, srun, sacct here
    done = subprocess.run([sys.executable, "-m", module, *(a.format(tmp=tmp_path) for a in args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    check_one_line(done.stderr, flag, flag)
    if case == "slurm without its tools":
        assert "use --executor local" in done.stderr
    assert snapshot(tmp_path) == before
