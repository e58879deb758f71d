"""The study manifest ``<out>/<study>/study.json``: which (model, seed) runs a study holds and where each stands.

Written by ``train.study.run`` (atomically, after every state change), read by ``eval.runs.study_progress``
(``--status`` and the dashboard). A run's own files stay the truth about training progress; the
manifest adds what only the launcher knows: the command, the job id, the log, the exit code.

States: ``pending`` (not started, queued, or interrupted and to be resumed), ``running``, ``done``
(``run.json`` finished), ``failed`` (non-zero exit, or a cluster job that ended or is gone without
finishing; the log says why). A SLURM run also records where submitit writes the job's output
(``job_log``) and outcome (``job_result``): the only trace of a job that died before training started.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.lab.artifacts import atomic_write_json

MANIFEST_NAME = "study.json"
RunState = Literal["pending", "running", "done", "failed"]
RUN_STATES: tuple[str, ...] = ("pending", "running", "done", "failed")
_RUN_NAME = re.compile(r"^(?P<model>.+)_s(?P<seed>-?\d+)$")


FIX = ("restore it from a copy, or rerun the same python -m train.study command with --reset (a new study.json "
       "from the command; finished runs are found from their folders and kept)")


class StudyManifestError(ValueError):
    """study.json is missing, unreadable or not a study manifest; the message names the file."""


def run_name(model: str, seed: int) -> str:
    """The run directory name of one (model, seed): ``<model>_s<seed>``."""
    return f"{model}_s{seed}"


def parse_run_name(name: str) -> tuple[str, int] | None:
    """``cbam_s2`` -> ("cbam", 2); None for another name."""
    match = _RUN_NAME.match(name)
    return (match["model"], int(match["seed"])) if match else None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunEntry:
    """One (model, seed) run as the launcher sees it."""

    model: str
    seed: int
    state: RunState = "pending"
    job_id: str | None = None
    log: str | None = None
    command: list[str] = field(default_factory=list)
    returncode: int | None = None
    attempts: int = 0
    job_log: str | None = None
    job_result: str | None = None
    started: str | None = None
    ended: str | None = None
    note: str | None = None

    @property
    def name(self) -> str:
        return run_name(self.model, self.seed)


@dataclass
class StudyManifest:
    """Everything needed to rerun or inspect a study; ``runs`` is keyed by run name."""

    name: str
    data: str
    models: list[str]
    seeds: list[int]
    executor: str
    train_args: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, RunEntry] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    updated: str = field(default_factory=utc_now)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Runs per state, every state present (0 when none)."""
        out = dict.fromkeys(RUN_STATES, 0)
        for entry in self.runs.values():
            out[entry.state] = out.get(entry.state, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = {k: asdict(v) for k, v in self.runs.items()}
        return data


def _field_problem(exc: Exception) -> str:
    """What is wrong with the fields, in words (a KeyError names a missing field, a TypeError a wrong one)."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} field" if exc.args else "a field missing"
    if isinstance(exc, AttributeError):
        return "a run entry is not an object"
    found = re.search(r"'(\w+)'", str(exc))
    return f"field {found.group(1)!r} missing or unknown" if found else "fields missing or of the wrong kind"


def manifest_path(study_dir: Path | str) -> Path:
    return Path(study_dir) / MANIFEST_NAME


def write_manifest(study_dir: Path | str, manifest: StudyManifest) -> None:
    """Atomic write (temp file + rename): a kill never leaves a half-written study.json."""
    manifest.updated = utc_now()
    atomic_write_json(manifest_path(study_dir), manifest.to_json())


def read_manifest(study_dir: Path | str) -> StudyManifest:
    """The manifest of a study folder (or of the study.json path itself)."""
    path = Path(study_dir)
    path = path if path.name == MANIFEST_NAME and path.is_file() else manifest_path(path)
    if not path.is_file():
        raise StudyManifestError(f"{path}: no study manifest (not a folder made by python -m train.study)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise StudyManifestError(f"{path}: unreadable study manifest ({reason}); {FIX}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        what = "empty" if not text.strip() else (
            "cut short (truncated)" if not text.rstrip().endswith("}") else "hand-edited or damaged")
        raise StudyManifestError(f"{path}: unreadable study manifest, {what}: not valid JSON at line {exc.lineno} "
                                 f"column {exc.colno}; {FIX}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise StudyManifestError(f"{path}: unreadable study manifest, valid JSON but no 'runs' object; {FIX}")
    try:
        runs = {name: RunEntry(**entry) for name, entry in data.pop("runs").items()}
        manifest = StudyManifest(**data, runs=runs)
    except (TypeError, KeyError, AttributeError) as exc:
        raise StudyManifestError(f"{path}: unreadable study manifest, valid JSON but {_field_problem(exc)}; "
                                 f"{FIX}") from None
    bad = [f"{n}: {e.state!r}" for n, e in manifest.runs.items() if e.state not in RUN_STATES]
    if bad:
        raise StudyManifestError(f"{path}: unknown run states {bad}; expected one of {list(RUN_STATES)}; {FIX}")
    return manifest
