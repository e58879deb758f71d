"""Where a study stands: one row per (model, seed) run from ``study.json`` and the runs' own files.

The manifest says what the launcher knows (state, job id, log); the run folder says what training
did: ``weights/Final.pth`` means done whatever the manifest last recorded (a cluster job finishes
without the launcher watching), ``run.json`` "failed" means a stopped run, and the TensorBoard
event files give the epochs reached. Used by ``python -m train.study --status`` and the Overview page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.study_manifest import MANIFEST_NAME, RUN_STATES, StudyManifest, StudyManifestError, read_manifest
from eval.convergence import load_convergence
from eval.event_files import EventCache
from eval.roots import iter_files

PROGRESS_COLUMNS: tuple[str, ...] = ("run", "model", "seed", "state", "epochs", "max_epoch", "job_id", "log",
                                     "note")


@dataclass(frozen=True)
class StudyProgress:
    """The table, the counts per state and any problem met reading the runs' files."""

    study_dir: Path
    manifest: StudyManifest
    table: pd.DataFrame  # PROGRESS_COLUMNS
    warnings: tuple[str, ...]

    @property
    def counts(self) -> dict[str, int]:
        return {s: int((self.table["state"] == s).sum()) for s in RUN_STATES}

    @property
    def complete(self) -> bool:
        return bool(len(self.table)) and bool((self.table["state"] == "done").all())


def _run_json(run_dir: Path) -> dict:
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def effective_state(manifest_state: str, run_dir: Path) -> str:
    """The manifest's state, corrected by the run's files (run.json "finished": done; "failed": failed).

    The trainer marks run.json finished right after writing Final.pth; the weights may have been moved
    since (the shipped demo keeps them apart), which must not make a finished run train again.
    """
    meta = _run_json(run_dir)
    if meta.get("status") == "finished":
        return "done"
    if meta.get("status") == "failed":
        return "failed"
    if manifest_state == "done":  # the manifest says done but the weights are gone: train it again
        return "pending"
    return manifest_state


def study_progress(study_dir: Path | str, cache: EventCache | None = None) -> StudyProgress:
    """Progress of every run of the study; raises `StudyManifestError` without a readable study.json."""
    study_dir = Path(study_dir)
    manifest = read_manifest(study_dir)
    curves = load_convergence([study_dir], cache=cache or EventCache())
    last_epoch = {str(r.run): r.last_epoch for r in curves.runs.itertuples()}
    rows = []
    for name, entry in manifest.runs.items():
        run_dir = study_dir / name
        meta = _run_json(run_dir)
        epochs = last_epoch.get(name)
        if meta.get("status") == "finished" and isinstance(meta.get("epochs_done"), int):
            epochs = meta["epochs_done"]
        rows.append({
            "run": name, "model": entry.model, "seed": entry.seed,
            "state": effective_state(entry.state, run_dir),
            "epochs": int(epochs) if epochs is not None and not pd.isna(epochs) else 0,
            "max_epoch": meta.get("max_epoch"), "job_id": entry.job_id, "log": entry.log, "note": entry.note,
        })
    return StudyProgress(study_dir, manifest, pd.DataFrame(rows, columns=list(PROGRESS_COLUMNS)),
                         tuple(curves.warnings))


def format_progress(progress: StudyProgress) -> str:
    """The ``--status`` text: a header with counts, one aligned row per run, failed runs' logs."""
    counts = progress.counts
    m = progress.manifest
    head = (f"study {m.name} ({progress.study_dir}): {len(progress.table)} runs, "
            + ", ".join(f"{counts[s]} {s}" for s in RUN_STATES) + f"; executor {m.executor}, data {m.data}")
    table = progress_display(progress)[["run", "state", "epochs", "job id"]].rename(columns={"job id": "job_id"})
    lines = [head, table.to_string(index=False)] if len(table) else [head]
    for row in progress.table[progress.table["state"] == "failed"].itertuples():
        lines.append(f"failed: {row.run}: see {row.log or 'its run folder'}" + (f" ({row.note})" if row.note else ""))
    lines += [f"warning: {w}" for w in progress.warnings]
    return "\n".join(lines)


def find_studies(roots: Iterable[Path | str]) -> tuple[list[Path], list[str]]:
    """Study folders (holding study.json) under the runs roots, symlinks confined to their root; warnings."""
    found: dict[Path, Path] = {}
    skipped: list[str] = []
    for root in map(Path, roots):
        for path in iter_files(root, ".json", skipped):
            if path.name == MANIFEST_NAME:
                found.setdefault(path.parent.resolve(), path.parent)
    return list(found.values()), skipped


def studies_progress(roots: Iterable[Path | str], cache: EventCache | None = None
                     ) -> tuple[list[StudyProgress], list[str]]:
    """Progress of every study under the roots; an unreadable study is a warning, never an exception."""
    folders, warnings = find_studies(roots)
    out = []
    for folder in folders:
        try:
            out.append(study_progress(folder, cache=cache))
        except StudyManifestError as exc:
            warnings.append(str(exc))
    return out, warnings


def progress_display(progress: StudyProgress) -> pd.DataFrame:
    """The Overview table of one study: run, state, "epochs reached / planned", job id, note."""
    t = progress.table
    return pd.DataFrame({
        "run": t["run"], "state": t["state"],
        "epochs": [f"{e}/{int(x)}" if x is not None and not pd.isna(x) else str(e)
                   for e, x in zip(t["epochs"], t["max_epoch"], strict=True)],
        "job id": t["job_id"].fillna("—"), "note": t["note"].fillna(""),
    })
