"""Where the dashboard may read from: data roots (CLI/env/defaults) and files confined to them.

Pure Python (no streamlit) so the rules are unit-tested: the UI never takes a free-text path, it only
offers these roots and the files found under them, and every chosen file is re-checked to resolve
inside an allowed root (a symlink pointing elsewhere is refused).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.lab.artifacts import COMPARISON_CSV, LATENCY_CSV, MANIFEST_JSON

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "FEATHERFACE_RESULTS_DIR"
RUNS_ENV = "FEATHERFACE_RUNS_DIR"
RESULT_MARKERS: tuple[str, ...] = (COMPARISON_CSV, LATENCY_CSV)
SHIPPED_RUNS: dict[str, tuple[str, ...]] = {"reference": ("assets", "reference", "runs"),
                                            "demo": ("assets", "demo", "runs")}
"""Runs roots shipped in the repository (path parts under the repo root) and the label their runs carry:
the real logs of the seed source's checkpoints, and the synthetic demo."""


class SourceError(ValueError):
    """A path is outside the allowed roots or not a usable file; the message says which."""


@dataclass(frozen=True)
class Roots:
    """The only folders the dashboard reads: results CSVs, training runs, checkpoint roots, shipped demo, and
    the shipped reference detectors trained on WIDER FACE (`assets/reference`, None when not set)."""

    results: Path
    runs: tuple[Path, ...]
    weights: tuple[Path, ...]
    demo: Path
    reference: Path | None = None

    @property
    def all(self) -> tuple[Path, ...]:
        """Every allowed root, for `ensure_within`."""
        return (self.results, *self.runs, *self.weights, self.demo)

    @property
    def demo_weights(self) -> Path:
        return self.demo / "weights"

    @property
    def demo_manifest(self) -> Path:
        return self.demo / MANIFEST_JSON


def resolve_roots(
    argv: Sequence[str], env: Mapping[str, str], repo_root: Path | str = REPO_ROOT
) -> Roots:
    """Roots from `-- --results-dir DIR --runs-dir DIR`, else FEATHERFACE_RESULTS_DIR / _RUNS_DIR, else defaults.

    Default results root: `<repo>/results` if it already holds a results CSV, otherwise the shipped
    `<repo>/assets/demo/results`. A runs dir given by the user replaces `<repo>/runs`; the shipped demo
    runs stay listed (and labelled as demo), and so do the shipped reference runs and weights
    (`<repo>/assets/reference`, trained on WIDER FACE). Relative paths are taken from the repository root.
    Unknown arguments are ignored (streamlit and pytest put their own in sys.argv).
    """
    repo = Path(repo_root).resolve()
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--runs-dir", default=None)
    args, _ = parser.parse_known_args(list(argv))
    demo = repo / "assets" / "demo"
    reference = repo / "assets" / "reference"

    results_arg = args.results_dir or env.get(RESULTS_ENV) or None
    if results_arg:
        results = _absolute(results_arg, repo)
    else:
        local = repo / "results"
        results = local if any((local / m).is_file() for m in RESULT_MARKERS) else demo / "results"

    runs_arg = args.runs_dir or env.get(RUNS_ENV) or None
    user_runs = _absolute(runs_arg, repo) if runs_arg else repo / "runs"
    runs = _unique((user_runs, demo / "runs", reference / "runs"))
    weights = _unique((repo / "weights", user_runs, demo, reference))
    return Roots(results=results, runs=runs, weights=weights, demo=demo, reference=reference)


def root_label(root: Path | str) -> str:
    """The name a runs root gives its runs: "reference" / "demo" for the shipped folders, else its own name."""
    parts = Path(root).resolve().parts
    for label, tail in SHIPPED_RUNS.items():
        if parts[-len(tail):] == tail:
            return label
    return parts[-1] if parts else str(root)


def _absolute(value: str, repo: Path) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else repo / path).resolve()


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    seen: dict[Path, None] = {}
    for p in paths:
        seen.setdefault(p.resolve(), None)
    return tuple(seen)


def is_within(path: Path | str, roots: Iterable[Path]) -> bool:
    """True if `path`, with every symlink resolved, lies inside one of `roots` (also resolved)."""
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    for root in roots:
        try:
            real_root = Path(root).resolve()
        except (OSError, RuntimeError):
            continue
        if real == real_root or real_root in real.parents:
            return True
    return False


def ensure_within(path: Path | str, roots: Iterable[Path]) -> Path:
    """The resolved path if it is an existing file inside an allowed root; `SourceError` otherwise."""
    roots = tuple(roots)
    if not is_within(path, roots):
        raise SourceError(f"refusing {path}: it does not resolve to a file inside the allowed folders "
                          f"{[str(r) for r in roots]}")
    real = Path(path).resolve()
    if not real.is_file():
        raise SourceError(f"refusing {path}: not a regular file")
    return real


def confine(path: Path | str, root: Path | str) -> Path:
    """The resolved file if `path` (every symlink followed) is a regular file inside `root`.

    Otherwise `SourceError` whose message names the file and why it is skipped: a symlink (or a path)
    resolving outside `root`, a dangling link, or something that is not a regular file.
    """
    path, real_root = Path(path), Path(root).resolve()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        what = "a dangling symlink" if path.is_symlink() else "unreadable"
        raise SourceError(f"{path}: skipped, {what} ({type(exc).__name__})") from None
    if real != real_root and real_root not in real.parents:
        what = "a symlink to" if path.is_symlink() else "resolves to"
        raise SourceError(f"{path}: skipped, {what} {real}, outside {real_root}")
    if not real.is_file():
        raise SourceError(f"{path}: skipped, not a regular file")
    return real


def confined_files(folder: Path | str, pattern: str, root: Path | str,
                   recursive: bool = False) -> tuple[list[Path], list[str]]:
    """Files matching `pattern` in `folder` (its subfolders too if `recursive`), each checked with
    `confine(path, root)`: the usable ones and, for every other match, the reason it was skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], []
    try:
        confine_dir(folder, root)
    except SourceError as exc:
        return [], [str(exc)]
    found, skipped = [], []
    for path in sorted(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        try:
            confine(path, root)
        except SourceError as exc:
            skipped.append(str(exc))
        else:
            found.append(path)
    return found, skipped


def confine_dir(folder: Path | str, root: Path | str) -> Path:
    """As `confine`, for a folder (e.g. results/eval/ must not be a symlink to a folder elsewhere)."""
    folder, real_root = Path(folder), Path(root).resolve()
    real = folder.resolve()
    if real != real_root and real_root not in real.parents:
        what = "a symlink to" if folder.is_symlink() else "resolves to"
        raise SourceError(f"{folder}: skipped, {what} {real}, outside {real_root}")
    return real


def iter_files(root: Path, suffix: str, skipped: list[str] | None = None) -> list[Path]:
    """Files with `suffix` under `root`, not following directory symlinks, hidden/temp files skipped.

    A symlinked file is kept only if it resolves inside `root`; each one that does not is refused with
    its reason, appended to `skipped` when given (and refused again by `ensure_within` when a file is used).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("__pycache__", ".venv"))
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(suffix):
                continue
            path = Path(dirpath) / name
            try:
                confine(path, root)
            except SourceError as exc:
                if skipped is not None:
                    skipped.append(str(exc))
            else:
                found.append(path)
    return found


def display_path(path: Path, roots: Roots) -> str:
    """A short, stable name for a file: relative to the repo root when inside it, else to its root."""
    repo = roots.demo.parent.parent
    path = Path(path)
    for base in (repo, *roots.weights, *roots.runs, roots.results):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return rel.as_posix() if base == repo else f"{base.name}/{rel.as_posix()}"
    return path.name


# An absolute path in free text: "/" at the start or after a space, quote, bracket, "=", ":" or ",", not "//"
# (URLs); it runs to the next space, quote or bracket, without trailing punctuation.
_ABSOLUTE = re.compile(r"(?<![^\s`'\"(\[{=:,])/(?!/)[^\s`'\"(){}\[\]<>|;,]*[^\s`'\"(){}\[\]<>|;,.:]")


def relative_text(text: str, roots: Roots) -> str:
    """`text` with every absolute path made relative to the folder it lies in, for a page a visitor reads.

    A path inside the repository becomes repo-relative (`assets/demo/results/x.csv`), one inside a root
    outside it becomes `<root name>/...` (`results/x.csv`), and any other absolute path (a symlink's target
    elsewhere, a system file named in an exception) shows as `…/<file name>`: a page never tells a
    visitor where the folders it serves lie on the disk, or what lies outside them.
    """
    repo = roots.demo.parent.parent
    bases: dict[str, str] = {}
    for root in (*roots.all, repo):
        inside_repo = root == repo or repo in root.parents
        name = repo_relative(root, repo) if inside_repo else root.name
        for form in {str(root), str(_resolved(root))}:
            if form != "/":  # a root at / would make every path "inside"; such text keeps the file names only
                bases.setdefault(form, name)
    for base in sorted(bases, key=len, reverse=True):  # the deepest folder names the path
        name = bases[base]
        text = re.sub(re.escape(base) + r"(/[^\s`'\"(){}\[\]<>|;,]*)?(?![\w-]|\.\w)",
                      lambda m, name=name: _join(name, m.group(1)), text)
    return _ABSOLUTE.sub(lambda m: "…/" + Path(m.group(0)).name, text)


def repo_relative(path: Path, repo: Path) -> str:
    rel = path.relative_to(repo).as_posix()
    return rel if rel != "." else "."


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _join(name: str, rest: str | None) -> str:
    rest = (rest or "").strip("/")
    if not rest:
        return name
    return rest if name == "." else f"{name}/{rest}"
