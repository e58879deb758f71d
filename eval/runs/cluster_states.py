"""What SLURM says about a study's jobs: squeue for the live ones, sacct for the finished, submitit's result files
for how a job ended; None where the cluster does not answer."""

from __future__ import annotations

import io
import pickle
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from core.lab.log_tail import last_line_of
from core.lab.study_manifest import (
    StudyManifest,
)

QUERY_TIMEOUT_S = 20


JobStates = dict[str, str]  # job id ("4242_0" for an array task) -> SLURM state ("PENDING", "CANCELLED", ...)


def _ask(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None


def _parse_states(text: str) -> JobStates:
    """``id|STATE`` lines (squeue -o '%i|%T', sacct -P -o JobID,State) -> {id: STATE}; job steps skipped."""
    out: JobStates = {}
    for line in text.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state and "." not in job_id:  # "4242_0.batch" is a step of 4242_0
            out[job_id] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return out


def squeue_states(job_ids: Sequence[str]) -> JobStates | None:
    """States of the jobs the controller still holds, ended ones included (for MinJobAge, 5 min by default).

    A job it does not list is one SLURM no longer has. None: squeue is missing or did not answer.
    """
    if not job_ids or shutil.which("squeue") is None:
        return None
    mains = sorted({j.split("_")[0] for j in job_ids})
    proc = _ask(["squeue", "--noheader", "--array", "--states", "all", "--format", "%i|%T", "--jobs", ",".join(mains)])
    if proc is None:
        return None
    if proc.returncode != 0:  # every id unknown is an error to squeue, and an answer to us
        return {} if "Invalid job id" in proc.stderr else None
    return _parse_states(proc.stdout)


def sacct_states(job_ids: Sequence[str]) -> JobStates | None:
    """Accounting's states of the jobs; None where sacct is missing or has no database behind it."""
    if not job_ids or shutil.which("sacct") is None:
        return None
    mains = sorted({j.split("_")[0] for j in job_ids})
    proc = _ask(["sacct", "--noheader", "--parsable2", "--format", "JobID,State", "--jobs", ",".join(mains)])
    if proc is None or proc.returncode != 0:  # "Slurm accounting storage is disabled": exit 1
        return None
    return _parse_states(proc.stdout)


def cluster_states(job_ids: Sequence[str]) -> JobStates | None:
    """Where SLURM stands on the jobs: squeue first, sacct for those squeue no longer holds.

    None when squeue cannot be asked (no cluster here): the runs then keep their recorded states
    unless their files say more. A job id absent from the answer is a job SLURM no longer has.
    """
    queue = squeue_states(job_ids)
    if queue is None:
        return None
    gone = [j for j in job_ids if j not in queue]
    accounting = sacct_states(gone) if gone else None
    return queue | {j: s for j, s in (accounting or {}).items() if j in gone}


def slurm_job_ids(manifest: StudyManifest) -> list[str]:
    """Job ids of the manifest's SLURM runs (local runs have ``local:<pid>``)."""
    return [str(e.job_id) for e in manifest.runs.values() if e.job_id and not str(e.job_id).startswith("local:")]


class _PlainUnpickler(pickle.Unpickler):
    """Plain data only: a result file is never a way to run code in the dashboard."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def job_outcome(result_path: str | Path | None) -> tuple[str, str] | None:
    """submitit's result file of an ended job: ("success", "") or ("error", the traceback's last line).

    None when the job left none (killed, cancelled, lost with its node) or it cannot be read.
    """
    if not result_path:
        return None
    try:
        kind, value = _PlainUnpickler(io.BytesIO(Path(result_path).read_bytes())).load()
    except (OSError, pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError):
        return None
    if kind == "error":
        return "error", (last_line_of(str(value)) or "")
    return ("success", "") if kind == "success" else None
