"""What one SLURM array task of ``python -m train.study`` runs: `RunJob`, pickled by submitit on submission.

Standard library only (and ``core.lab.log_tail``): the job's Python unpickles it on the node before the
training starts, and importing the launcher there (torch, pandas) would cost seconds per job for nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from core.lab.log_tail import log_last_line


def job_name(env: Mapping[str, str]) -> str:
    """The job id as squeue and study.json show it: ``<array>_<task>`` for an array task."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "?")


class RunJob:
    """One ordinary training command, its output appended to the run's log.

    Checkpointable (submitit requeues it on timeout or preemption) because the command always
    carries ``--resume auto``: the requeued job continues from ``last.pth``. A failure raises with the
    log's last line, so submitit's job log ends with the reason the study shows. ``OMP_NUM_THREADS`` is
    ``threads``, else the CPUs SLURM gave the job: torch's default, one thread per core of the node,
    oversubscribes a node shared with other jobs, and OpenMP threads waiting on each other slow it many-fold.
    """

    def __init__(self, command: list[str], cwd: str, log: str, threads: int | None = None) -> None:
        self.command, self.cwd, self.log, self.threads = command, cwd, log, threads

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        threads = str(self.threads or env.get("SLURM_CPUS_PER_TASK") or 1)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads
        return env

    def __call__(self) -> int:
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        with open(self.log, "a") as log:
            log.write(f"== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} slurm job {job_name(os.environ)} on "
                      f"{os.environ.get('SLURMD_NODENAME', '?')}, {env['OMP_NUM_THREADS']} threads: "
                      f"{' '.join(self.command)}\n")
            log.flush()
            code = subprocess.run(self.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode
        if code != 0:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
                else f"exit code {code}"
            raise RuntimeError(f"python -m train {how}; last line of {self.log}: {log_last_line(self.log)}")
        return code

    def checkpoint(self) -> object:
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(self.command, self.cwd, self.log, self.threads))
