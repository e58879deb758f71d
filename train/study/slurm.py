"""The SLURM executor: one array job per study via submitit, its state read back from squeue/sacct and submitit's
files."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from core.lab.study_manifest import (
    RunEntry,
    StudyManifest,
    utc_now,
    write_manifest,
)
from eval.runs.cluster_states import JobStates, cluster_states, slurm_job_ids
from eval.runs.study_progress import reconcile
from train.study.job import RunJob
from train.study.plan import StudyError, StudyPlan


def _slurm_entries(manifest: StudyManifest) -> list[RunEntry]:
    return [e for e in manifest.runs.values() if e.job_id and not e.job_id.startswith("local:")]


def refresh_slurm(study_dir: Path, manifest: StudyManifest) -> JobStates | None:
    """Bring the submitted runs' states up to date (squeue, sacct, the job files); the cluster's answer.

    None: squeue could not be asked, and runs with a job id keep their recorded states.
    """
    ids = slurm_job_ids(manifest)
    jobs = cluster_states(ids) if ids else None
    reconcile(study_dir, manifest, jobs)
    return jobs


def node_setup(python: str) -> list[str]:
    """Lines of the job script before the job starts: a node that cannot see the study's Python says so."""
    q = shlex.quote(python)
    return [f'[ -x {q} ] || {{ echo "featherface: {q} is not on $(hostname): the study\'s Python must be on a '
            f'filesystem the nodes share (docs/slurm.md)" >&2; exit 1; }}']


def submit_slurm(plan: StudyPlan, manifest: StudyManifest, entries: list[RunEntry], args: argparse.Namespace) -> None:
    """Submit, as one job array through submitit, the runs that are neither done nor queued/running."""
    import submitit

    jobs = refresh_slurm(plan.study_dir, manifest)
    slurm = {id(e) for e in _slurm_entries(manifest)}
    in_flight = {id(e) for e in entries if id(e) in slurm and e.state in ("pending", "running")}
    if jobs is None and in_flight:  # cannot ask: never submit twice what may still be queued or running
        print(f"warning: squeue did not answer: {len(in_flight)} runs with a job id are taken as queued or "
              "running and not submitted again", file=sys.stderr)
    todo = [e for e in entries if e.state != "done" and id(e) not in in_flight]
    if not todo:
        write_manifest(plan.study_dir, manifest)
        print("nothing to submit: every run is done, queued or running", file=sys.stderr)
        return
    python = str(plan.resources.get("python") or sys.executable)
    executor = submitit.SlurmExecutor(folder=str(plan.study_dir / "slurm" / "%j"), python=shlex.quote(python))
    params: dict = {"job_name": f"featherface_{manifest.name}", "time": args.timeout_min, "nodes": 1,
                    "ntasks_per_node": 1, "stderr_to_stdout": True, "setup": node_setup(python)}
    optional = {"partition": args.slurm_partition, "cpus_per_task": args.cpus_per_run,
                "gpus_per_node": plan.gpus_per_run or None,  # 0: a CPU cluster, no gres at all
                "mem": plan.resources.get("mem"), "array_parallelism": args.slurm_array_parallelism,
                "additional_parameters": plan.resources.get("slurm_extra") or None}
    params |= {k: v for k, v in optional.items() if v is not None}
    executor.update_parameters(**params)
    cwd = str(Path.cwd())
    try:
        with executor.batch():
            submitted = [executor.submit(RunJob(e.command, cwd, str(e.log), args.threads_per_run)) for e in todo]
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as exc:
        write_manifest(plan.study_dir, manifest)
        raise StudyError(f"sbatch refused the job array: {_sbatch_message(exc)}") from None
    for entry, job in zip(todo, submitted, strict=True):
        entry.job_id, entry.state, entry.note = str(job.job_id), "pending", None
        entry.job_log, entry.job_result = str(job.paths.stdout), str(job.paths.result_pickle)
        entry.attempts += 1
        entry.started, entry.ended, entry.returncode = utc_now(), None, None
    write_manifest(plan.study_dir, manifest)
    print(f"submitted {len(submitted)} runs as job array {str(submitted[0].job_id).split('_')[0]}: "
          + ", ".join(f"{e.name}={e.job_id}" for e in todo), file=sys.stderr)


def _sbatch_message(exc: BaseException) -> str:
    """sbatch's own complaint (e.g. an invalid gres or account) out of submitit's exception, on one line."""
    text = str(getattr(exc, "stderr", None) or exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    said = [ln for ln in lines if "sbatch:" in ln]
    return (said[-1] if said else lines[-1] if lines else type(exc).__name__).replace("sbatch: error: ", "")
