"""One place for the command lines' path arguments, their pre-flight checks and their one-line errors.

Every ``python -m`` entry point builds its parser with `CliParser` and gives each path flag one of the
types below (`input_file`, `input_dir`, `input_path`, `output_file`, `output_dir`). argparse calls the
type while parsing, so a bad path stops the command before any work starts, with one line that names
the flag and the path:

    python -m eval.conclusion: error: argument --out: 'results' is a folder; give a file path, e.g. 'results/x.md'

What each type refuses (nothing is created or written by the checks themselves):

- input file: missing, a folder, empty (0 bytes), not readable;
- input folder: missing, a file, empty, not listable;
- output file: an existing folder; a parent that cannot be created (a file on the way, no write permission);
- output folder: an existing file; a folder that cannot be created or written in.

`missing_tools` checks programs and optional packages a command needs (sbatch, openvino, ...), so that
the command can refuse with "use X instead" before writing anything. `error_line` turns an exception
into the one line a user reads (no quoted KeyError, no traceback, no multi-line dump).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, NoReturn

Role = Literal["input_file", "input_dir", "input_path", "output_file", "output_dir"]
ROLES: tuple[str, ...] = ("input_file", "input_dir", "input_path", "output_file", "output_dir")


def show(path: Path | str) -> str:
    """A path quoted for a one-line message: spaces stay visible, a newline in a name cannot break the line."""
    return "'" + str(path).replace("\n", "\\n").replace("\r", "\\r") + "'"


def one_line(text: str) -> str:
    return " ".join(str(text).split("\n")).strip()


class CliParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: message (--help for usage)`), exit status 2.

    The usage block argparse prints before its error is dropped: for a command with twenty flags it
    buries the one line that says what is wrong.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (--help for usage)\n")

    def parse_checked(self, argv: Sequence[str] | None = None, skip: Sequence[str] = ()) -> argparse.Namespace:
        """`parse_args`, then `check_defaults`: a default input that is missing stops here, before any work."""
        args = self.parse_args(argv)
        check_defaults(self, args, skip)
        return args


class PathArg:
    """An argparse ``type`` that checks a path for its role and returns it (a `Path`, or `str` with ``text``).

    ``keywords`` are values passed through unchecked (``--resume auto``).
    """

    def __init__(self, role: Role, *, text: bool = False, keywords: Sequence[str] = ()) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
        self.role, self.text, self.keywords = role, text, tuple(keywords)
        self.__name__ = role.replace("_", " ")  # what argparse calls the type in its own messages

    def __repr__(self) -> str:
        return f"PathArg({self.role!r})"

    def __call__(self, value: str) -> Path | str:
        if value in self.keywords:
            return value
        if not value:
            raise argparse.ArgumentTypeError("an empty path; give a file or folder")
        path = Path(value).expanduser()
        problem = check_path(path, self.role) if _CHECKING[-1] else None
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value if self.text else path


_CHECKING = [True]


@contextlib.contextmanager
def unchecked_paths() -> Iterator[None]:
    """Parse without looking at the disk: for a dry parse of documented commands, whose files are the reader's.
    Commands never use it."""
    _CHECKING.append(False)
    try:
        yield
    finally:
        _CHECKING.pop()


def check_path(path: Path, role: Role) -> str | None:
    """Why `path` cannot serve as `role`, in words, or None when it can. Never creates anything."""
    if role == "output_file":
        return _check_output_file(path)
    if role == "output_dir":
        return _check_output_dir(path)
    return _check_input(path, role)


def _check_input(path: Path, role: Role) -> str | None:
    what = {"input_file": "file", "input_dir": "folder", "input_path": "file or folder"}[role]
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:
        return f"{show(path)} cannot be inspected ({exc.strerror or type(exc).__name__})"
    if not exists:
        if path.is_symlink():
            return f"{show(path)} is a broken symbolic link (its target does not exist)"
        first = _first_existing(path.parent)
        if first is not None and not first.is_dir():
            return f"{show(path)} not found: {show(first)} is a file, not a folder"
        if first is not None and first != path.parent:
            return f"{show(path)} not found: the folder {show(path.parent)} does not exist either"
        return f"{show(path)}: {what} not found"
    if role == "input_file" and is_dir:
        return f"{show(path)} is a folder; a file is expected here"
    if role == "input_dir" and not is_dir:
        return f"{show(path)} is a file; a folder is expected here"
    if is_dir:
        if not os.access(path, os.R_OK | os.X_OK):
            return f"{show(path)}: no permission to list this folder"
        try:
            empty = next(os.scandir(path), None) is None
        except OSError as exc:
            return f"{show(path)}: the folder cannot be listed ({exc.strerror or type(exc).__name__})"
        return f"{show(path)} is an empty folder" if empty else None
    if not path.is_file():
        return f"{show(path)} is not a regular file (a device, socket or pipe)"
    if not os.access(path, os.R_OK):
        return f"{show(path)}: no permission to read this file"
    if path.stat().st_size == 0:
        return f"{show(path)} is empty (0 bytes)"
    return None


def _first_existing(path: Path) -> Path | None:
    """`path` or its nearest ancestor that exists (None only for a relative path whose cwd vanished)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def _check_creatable(folder: Path, target: Path) -> str | None:
    """Whether `folder` exists as a writable folder or can be created (for writing `target` into it)."""
    first = _first_existing(folder if str(folder) else Path("."))
    if first is None:
        return f"{show(target)} cannot be written: none of its parent folders exists"
    if not first.is_dir():
        if first == folder:
            return f"{show(target)} cannot be written: {show(first)} is a file, not a folder"
        return (f"{show(target)} cannot be written: {show(first)} is a file, so the folder {show(folder)} "
                "cannot be created")
    if not os.access(first, os.W_OK | os.X_OK):
        if first == folder:
            return f"{show(target)} cannot be written: no permission to write in the folder {show(first)}"
        return (f"{show(target)} cannot be written: the folder {show(folder)} cannot be created, no permission to "
                f"write in {show(first)}")
    return None


def _check_output_file(path: Path) -> str | None:
    if path.is_dir():
        return f"{show(path)} is a folder; give a file path, e.g. {show(path / 'name')} with the right extension"
    if path.exists() and not path.is_file():
        return f"{show(path)} is not a regular file (a device, socket or pipe); give a file path"
    return _check_creatable(path.parent, path)


def _check_output_dir(path: Path) -> str | None:
    if path.exists() and not path.is_dir():
        return f"{show(path)} is a file; a folder is expected here"
    return _check_creatable(path, path)


def require(parser: argparse.ArgumentParser, flag: str, path: Path | str, role: Role) -> None:
    """The parse-time check for a path a command settles after parsing (a default derived from another flag,
    a value restored from a record): the same one-line refusal, naming the flag, before any work."""
    problem = check_path(Path(path).expanduser(), role) if _CHECKING[-1] else None
    if problem:
        parser.error(f"argument {flag}: {problem}")


def check_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace, skip: Sequence[str] = ()) -> None:
    """Check the path flags left at their default (argparse types only see what was typed): a default input
    that is missing stops here, naming its flag, before any work. Kept out of parsing so that
    ``build_parser().parse_args([])`` still shows the defaults without looking at the disk."""
    for action in parser._actions:
        if not isinstance(action.type, PathArg) or not action.option_strings:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        value = getattr(args, action.dest, None)
        if flag in skip or value is None or value is not action.default:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if str(item) not in action.type.keywords:
                require(parser, flag, item, action.type.role)


input_file = PathArg("input_file")
input_dir = PathArg("input_dir")
input_path = PathArg("input_path")
output_file = PathArg("output_file")
output_dir = PathArg("output_dir")


def missing_tools(programs: Sequence[str] = (), modules: Sequence[str] = ()) -> list[str]:
    """The programs (on PATH) and Python packages (importable) among those given that are not here."""
    gone = [p for p in programs if shutil.which(p) is None]
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            gone.append(f"the Python package {name}")
    return gone


def error_line(exc: BaseException) -> str:
    """An exception as one line of words: a KeyError's text without its quotes, never a repr or a traceback."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return one_line(text) or type(exc).__name__


def read_problem(exc: BaseException) -> str:
    """Why a JSON/CSV file could not be used, in words (for "<path>: unreadable ... (<this>)")."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON at line {exc.lineno} column {exc.colno}: cut short or hand-edited"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} field" if exc.args else "a field is missing"
    if isinstance(exc, OSError):
        return exc.strerror or "cannot be read"
    if isinstance(exc, (TypeError, AttributeError)):
        return "a field of the wrong kind (hand-edited, or written by another tool)"
    return error_line(exc)


def fail(exc: BaseException | str, code: int = 2) -> int:
    """Print ``error: <one line>`` on stderr and return the exit status (for ``return fail(exc)`` in a main)."""
    print(f"error: {exc if isinstance(exc, str) else error_line(exc)}", file=sys.stderr)
    return code


def warn(message: str) -> None:
    """``warning: <one line>`` on stderr: what was skipped, with its path and the reason."""
    print(f"warning: {one_line(message)}", file=sys.stderr)
