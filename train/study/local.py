"""The local executor: up to --parallel training processes at once, each one's state written to the manifest as it
changes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from core.lab.study_manifest import (
    RunEntry,
    StudyManifest,
    utc_now,
    write_manifest,
)
from eval.runs.study_progress import (
    effective_state,
)
from train.study.plan import StudyPlan


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the launcher dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(plan: StudyPlan, entry: RunEntry, env: dict[str, str]) -> tuple[subprocess.Popen, object]:
    log_path = Path(entry.log or plan.log_path(entry.model, entry.seed))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a")  # noqa: SIM115  (closed when the process ends)
    entry.attempts += 1
    log.write(f"== {utc_now()} attempt {entry.attempts}: {' '.join(entry.command)}\n")
    log.flush()
    proc = subprocess.Popen(entry.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    entry.state, entry.job_id, entry.started, entry.ended = "running", f"local:{proc.pid}", utc_now(), None
    entry.returncode, entry.note = None, None
    return proc, log


def run_local(plan: StudyPlan, manifest: StudyManifest, todo: list[RunEntry], parallel: int,
              threads: int | None, progress: bool, total: int) -> None:
    """Run ``todo`` here, ``parallel`` at a time; the manifest follows every start and end."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    queue, active = list(todo), {}
    bar = tqdm(total=total, initial=total - len(todo), desc=f"study {manifest.name}", unit="run",
               disable=not progress)

    def stop(signum: int, _frame: object) -> None:
        for entry, proc, log in active.values():
            proc.terminate()
            proc.wait()
            log.close()
            entry.state, entry.note, entry.ended = "pending", f"interrupted (signal {signum})", utc_now()
        write_manifest(plan.study_dir, manifest)
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while queue or active:
            while queue and len(active) < parallel:
                entry = queue.pop(0)
                active[entry.name] = (entry, *_start(plan, entry, env))
                print(f"start {entry.name}: log {entry.log}", file=sys.stderr, flush=True)
                write_manifest(plan.study_dir, manifest)
            time.sleep(0.2)
            for entry, proc, log in list(active.values()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                del active[entry.name]
                entry.returncode, entry.ended = code, utc_now()
                entry.state = effective_state("failed", plan.study_dir / entry.name)  # type: ignore[assignment]
                if code == 0 and entry.state != "done":
                    entry.state, entry.note = "failed", "exit 0 but the run is not finished"
                if entry.state == "done":
                    print(f"done {entry.name}", file=sys.stderr, flush=True)
                else:
                    entry.note = entry.note or f"exit code {code}"
                    print(f"FAILED {entry.name} ({entry.note}): see {entry.log}", file=sys.stderr, flush=True)
                bar.update()
                write_manifest(plan.study_dir, manifest)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        bar.close()
