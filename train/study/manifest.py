"""The study's manifest on disk: created or resumed, the runs still to do, one launcher at a time (a lock file)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from core.lab.study_manifest import (
    RunEntry,
    StudyManifest,
    manifest_path,
    read_manifest,
    run_name,
)
from eval.runs.study_progress import (
    effective_state,
)
from train.study.plan import StudyError, StudyPlan

LOCK_NAME = ".study.lock"


def load_or_create(plan: StudyPlan) -> StudyManifest:
    """The study's manifest, created or extended with new (model, seed) runs; other settings must match."""
    if manifest_path(plan.study_dir).is_file():
        manifest = read_manifest(plan.study_dir)
        differs = {k: (old, new) for k, old, new in (("data", manifest.data, str(plan.data)),
                                                     ("train_args", manifest.train_args, plan.train_args))
                   if old != new}
        if differs:
            raise StudyError(f"{manifest_path(plan.study_dir)} was made with other settings "
                             + "; ".join(f"{k}: {o} (now {n})" for k, (o, n) in differs.items())
                             + ": runs would mix settings. Use another --name, or the recorded ones.")
        manifest.executor, manifest.resources = plan.executor, plan.resources
        manifest.models = list(dict.fromkeys([*manifest.models, *plan.models]))
        manifest.seeds = list(dict.fromkeys([*manifest.seeds, *plan.seeds]))
    else:
        manifest = StudyManifest(name=plan.study_dir.name, data=str(plan.data), models=plan.models,
                                 seeds=plan.seeds, executor=plan.executor, train_args=plan.train_args,
                                 resources=plan.resources)
    for model in plan.models:
        for seed in plan.seeds:
            entry = manifest.runs.setdefault(run_name(model, seed), RunEntry(model=model, seed=seed))
            entry.command = plan.command(model, seed)
            entry.log = str(plan.log_path(model, seed))
    return manifest


def selected(plan: StudyPlan, manifest: StudyManifest) -> list[RunEntry]:
    """This command's runs, their states corrected by the run folders (finished runs are done)."""
    entries = [manifest.runs[run_name(m, s)] for m in plan.models for s in plan.seeds]
    for entry in entries:
        entry.state = effective_state(entry.state, plan.study_dir / entry.name)  # type: ignore[assignment]
    return entries


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """One launcher per study folder: a second one stops with a message instead of training a run twice."""
    study_dir.mkdir(parents=True, exist_ok=True)
    with open(study_dir / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise StudyError(f"another python -m train.study (pid {handle.read().strip() or '?'}) is running "
                             f"{study_dir}; wait for it or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
