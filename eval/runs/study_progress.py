"""Where a study stands: one row per (model, seed) run from ``study.json``, SLURM and the runs' own files.

The manifest says what the launcher knows (state, job id, log); the run folder says what training
did: ``run.json`` "finished" means done whatever the manifest last recorded (a cluster job finishes
without the launcher watching), "failed" means a stopped run, and the TensorBoard event files give
the epochs reached. A SLURM run that is not finished is asked of the cluster (`cluster_states`):
``squeue`` for the jobs the controller still holds, ``sacct`` for the others where accounting exists.
A job SLURM no longer has, or holds as ended, is ``failed`` with its log and the log's last line
(submitit's job output: what killed it, even before training started); never ``pending``.
Used by ``python -m train.study --status``, its reruns and the Overview page, so all three agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.lab.log_tail import log_last_line
from core.lab.roots import iter_files
from core.lab.study_manifest import (
    MANIFEST_NAME,
    RUN_STATES,
    RunEntry,
    StudyManifest,
    StudyManifestError,
    read_manifest,
)
from eval.runs.cluster_states import JobStates, cluster_states, job_outcome, slurm_job_ids
from eval.runs.convergence import load_convergence
from eval.runs.event_cache import EventCache

PROGRESS_COLUMNS: tuple[str, ...] = ("run", "model", "seed", "state", "epochs", "max_epoch", "job_id", "log",
                                     "note", "last_line")
# SLURM job states (squeue %T, sacct State) -> the run is queued / running; any other state has ended.
SLURM_WAITING = frozenset({"PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD",
                           "REQUEUE_FED", "RESV_DEL_HOLD"})
SLURM_RUNNING = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "STOPPED"})
UNASKED = "squeue unavailable: state as last recorded"
ClusterQuery = Callable[[Sequence[str]], "JobStates | None"]


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


@dataclass(frozen=True)
class RunStatus:
    """Where one run stands, and for a failed one the log that says why and that log's last line."""

    state: str
    note: str | None
    log: str | None
    last_line: str | None = None


def _failed(note: str | None, *logs: str | None) -> RunStatus:
    """Failed, pointing at the first of ``logs`` that exists (the job's output before the run's own log)."""
    log = next((p for p in logs if p and Path(p).is_file()), None)
    if log is None and any(logs):  # say so rather than send the user to a file that is not there
        return RunStatus("failed", f"{note}; no log written" if note else "no log written",
                         next(p for p in logs if p))
    return RunStatus("failed", note, log, log_last_line(log))


def run_status(entry: RunEntry, run_dir: Path, jobs: JobStates | None) -> RunStatus:
    """One run's state from its files first, then SLURM (``jobs``: `cluster_states`, None: not asked).

    A SLURM job that is queued or running keeps the run pending/running. One that ended, or that
    SLURM no longer has, without the run being finished is failed: with sacct gone and the job gone
    from squeue, submitit's result file and job log are all that is left of it.
    """
    state = effective_state(entry.state, run_dir)
    if state == "done":
        return RunStatus("done", None, entry.log)
    meta = _run_json(run_dir)
    if meta.get("status") == "failed":  # the trainer stopped it (non-finite loss) and said why
        return _failed(str(meta.get("error") or entry.note or "run.json: failed"), entry.log)
    job_id = str(entry.job_id or "")
    if not job_id or job_id.startswith("local:"):
        return _failed(entry.note, entry.log) if state == "failed" else RunStatus(state, entry.note, entry.log)
    job = None if jobs is None else jobs.get(job_id)
    if job in SLURM_WAITING:
        return RunStatus("pending", None if job == "PENDING" else f"slurm {job}", entry.log)
    if job in SLURM_RUNNING:
        return RunStatus("running", None, entry.log)
    outcome = job_outcome(entry.job_result)
    if jobs is None and outcome is None:  # cannot ask SLURM, and the job left no outcome: as last recorded
        if state == "failed":
            return _failed(entry.note, entry.job_log, entry.log)
        return RunStatus(state, UNASKED, entry.log)
    if job is not None:
        why = f"slurm job {job_id} {job} before the run finished"
    elif jobs is not None:
        why = f"slurm job {job_id} gone (SLURM no longer has it) before the run finished"
    else:
        why = f"slurm job {job_id} ended before the run finished"
    status = _failed(why, entry.job_log, entry.log)
    if status.last_line is None and outcome is not None and outcome[1]:  # no log left: the traceback's word
        return RunStatus(status.state, status.note, status.log, outcome[1])
    return status


def reconcile(study_dir: Path, manifest: StudyManifest, jobs: JobStates | None) -> None:
    """Bring every run's recorded state and note in line with `run_status` (the launcher then saves it)."""
    for name, entry in manifest.runs.items():
        status = run_status(entry, study_dir / name, jobs)
        if status.note != UNASKED:
            entry.state, entry.note = status.state, status.note  # type: ignore[assignment]


def _finished_epochs(meta: dict) -> int | None:
    """Epochs a finished run reports in its run.json (then its event files need not be read)."""
    epochs = meta.get("epochs_done")
    return epochs if meta.get("status") == "finished" and isinstance(epochs, int) else None


def study_progress(study_dir: Path | str, cache: EventCache | None = None,
                   cluster: ClusterQuery | None = cluster_states) -> StudyProgress:
    """Progress of every run of the study; raises `StudyManifestError` without a readable study.json.

    ``cluster`` answers for the SLURM job ids (default: ask squeue/sacct; None: do not ask). Only the runs
    not finished have their event files read (epochs reached so far): a finished study of 15 x 350 epochs
    costs 15 run.json reads, not 60 MB of event files.
    """
    study_dir = Path(study_dir)
    manifest = read_manifest(study_dir)
    ids = slurm_job_ids(manifest)
    jobs = cluster(ids) if ids and cluster is not None else None
    metas = {name: _run_json(study_dir / name) for name in manifest.runs}
    open_runs = [study_dir / name for name, meta in metas.items()
                 if _finished_epochs(meta) is None and (study_dir / name).is_dir()]
    warnings: tuple[str, ...] = ()
    last_epoch: dict[str, object] = {}
    if open_runs:
        curves = load_convergence(open_runs, cache=cache or EventCache())
        last_epoch = {Path(r.path).relative_to(study_dir).as_posix(): r.last_epoch for r in curves.runs.itertuples()}
        warnings = curves.warnings
    rows = []
    for name, entry in manifest.runs.items():
        run_dir = study_dir / name
        meta = metas[name]
        status = run_status(entry, run_dir, jobs)
        epochs = _finished_epochs(meta)
        if epochs is None:
            epochs = last_epoch.get(name)
        rows.append({
            "run": name, "model": entry.model, "seed": entry.seed, "state": status.state,
            "epochs": int(epochs) if epochs is not None and not pd.isna(epochs) else 0,
            "max_epoch": meta.get("max_epoch"), "job_id": entry.job_id, "log": status.log, "note": status.note,
            "last_line": status.last_line,
        })
    return StudyProgress(study_dir, manifest, pd.DataFrame(rows, columns=list(PROGRESS_COLUMNS)), warnings)


def cluster_warnings(progress: StudyProgress) -> list[str]:
    """A line when SLURM could not be asked: its runs are shown as last recorded, perhaps long ended."""
    unasked = progress.table[progress.table["note"] == UNASKED]
    if unasked.empty:
        return []
    return [f"squeue did not answer (no cluster reachable from here?): {len(unasked)} SLURM runs "
            f"({', '.join(unasked['run'])}) shown as last recorded"]


def failure_lines(progress: StudyProgress) -> list[str]:
    """One line per failed run: its log, why, and the log's last line (``--status`` and the Overview)."""
    lines = []
    for row in progress.table[progress.table["state"] == "failed"].itertuples():
        line = f"failed: {row.run}: see {row.log or 'its run folder'}" + (f" ({row.note})" if row.note else "")
        if row.last_line:
            line += f"; last line: {row.last_line}"
        lines.append(line)
    return lines


def format_progress(progress: StudyProgress) -> str:
    """The ``--status`` text: a header with counts, one aligned row per run, failed runs' logs."""
    counts = progress.counts
    m = progress.manifest
    head = (f"study {m.name} ({progress.study_dir}): {len(progress.table)} runs, "
            + ", ".join(f"{counts[s]} {s}" for s in RUN_STATES) + f"; executor {m.executor}, data {m.data}")
    table = progress_display(progress)[["run", "state", "epochs", "job id"]].rename(columns={"job id": "job_id"})
    lines = [head, table.to_string(index=False)] if len(table) else [head]
    lines += failure_lines(progress)
    lines += [f"warning: {w}" for w in [*cluster_warnings(progress), *progress.warnings]]
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


def studies_progress(roots: Iterable[Path | str], cache: EventCache | None = None,
                     cluster: ClusterQuery | None = cluster_states) -> tuple[list[StudyProgress], list[str]]:
    """Progress of every study under the roots; an unreadable study is a warning, never an exception."""
    folders, warnings = find_studies(roots)
    out = []
    for folder in folders:
        try:
            out.append(study_progress(folder, cache=cache, cluster=cluster))
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
