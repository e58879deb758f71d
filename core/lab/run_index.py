"""The training runs under the runs roots, each counted once, each read only from inside its root.

Why: the shipped demo runs are always listed beside the user's runs folder; a copy of them there
would double every run in the seed statistics. A run's identity is the `id` in its run.json when it
has one, else the content hash of its run.json (a copy has the same bytes, creation time included).
A run.json that resolves outside its root (a symlink to a file elsewhere) is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.io.cli_paths import read_problem
from core.io.hashing import file_sha256
from core.lab.artifacts import RUN_JSON, RunInfo, find_runs
from core.lab.roots import SourceError, confine


@dataclass
class RunIndex:
    """(root, run) pairs in root order, what was skipped and why, and which duplicates were dropped."""

    runs: list[tuple[Path, RunInfo]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return [*self.skipped, *self.duplicates]


def run_identity(info: RunInfo) -> str:
    """`id:<run.json id>` when the run names itself, else `sha256:<hash of run.json>`."""
    run_id = info.meta.get("id")
    if isinstance(run_id, str) and run_id:
        return f"id:{run_id}"
    return "sha256:" + file_sha256(info.path / RUN_JSON)


def index_runs(roots: Iterable[Path | str]) -> RunIndex:
    """Every run under `roots` once (the first root that holds it wins); missing roots are simply empty."""
    index = RunIndex()
    first: dict[str, Path] = {}
    for root in map(Path, roots):
        infos, warnings = find_runs(root)
        index.skipped += warnings
        for info in infos:
            try:
                confine(info.path / RUN_JSON, root)
                identity = run_identity(info)
            except SourceError as exc:
                index.skipped.append(str(exc))
                continue
            except OSError as exc:
                index.skipped.append(f"{info.path / RUN_JSON}: skipped, unreadable ({read_problem(exc)})")
                continue
            if identity in first:
                index.duplicates.append(f"{info.path}: the same run as {first[identity]} ({identity[:19]}…): "
                                        "counted once")
                continue
            first[identity] = info.path
            index.runs.append((root, info))
    return index
