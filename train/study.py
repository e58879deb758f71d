"""``python -m train.study``: every (model, seed) run of a study in one resumable command, here or on SLURM.

    python -m train.study --models cbam eca_cbam eca_cbam_parallel --seeds 0 1 2 --data data/widerface \\
        --out runs/ --name featherface [--executor local|slurm|auto] [--parallel N] [train flags...]
    python -m train.study --status runs/featherface

Each run ``<model>_s<seed>`` is an ordinary ``python -m train`` process (``torchrun`` with
``--gpus-per-run`` > 1) writing ``<out>/<name>/<model>_s<seed>/``, always with ``--resume auto``:
rerunning the same command skips finished runs and continues interrupted ones from ``last.pth``.
Flags this CLI does not know are passed to every ``python -m train`` unchanged (checked by its parser
before anything starts). A failed run is reported with its log and the others go on.

Executors: ``local`` runs the processes here, ``--parallel N`` at a time (one study process per
folder, guarded by a lock; if the launcher dies its runs are stopped with it). ``slurm`` submits one
job array through submitit (requeued on timeout, resuming from ``last.pth``) and returns; ``--status``
asks ``sacct`` where the jobs stand. ``auto`` is slurm where ``sbatch`` exists. The manifest
``<out>/<name>/study.json`` (``core.study_manifest``) is rewritten atomically after every change.
``--then-evaluate``: once every run is done, ``eval.results`` over the study's weights, one row per run.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from core.config import MODEL_CONFIGS
from core.study_manifest import (
    RunEntry,
    StudyManifest,
    StudyManifestError,
    manifest_path,
    read_manifest,
    run_name,
    utc_now,
    write_manifest,
)
from eval.study_progress import effective_state, format_progress, study_progress
from train.cli import build_parser as train_parser

RESERVED = ("--network", "--data", "--seed", "--out", "--run-name", "--resume")
LOCK_NAME = ".study.lock"
# sacct states -> manifest states (anything else that ended: failed, resubmitted with --resume auto)
SLURM_WAITING = {"PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
EPILOG = """\
examples:
  python -m train.study --models cbam eca_cbam eca_cbam_parallel --seeds 0 1 2 --data data/widerface --out runs/
  python -m train.study ... --executor slurm --slurm-partition gpu --gpus-per-run 4 --timeout-min 2880
  python -m train.study --status runs/study
"""


class StudyError(ValueError):
    """The study cannot start: bad flags, another launcher on the folder, settings that contradict study.json."""


# --------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.study", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--status", type=Path, default=None, metavar="STUDY_DIR",
                   help="print the progress table of an existing study and exit")
    p.add_argument("--models", nargs="+", choices=list(MODEL_CONFIGS), default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="default 0 1 2")
    p.add_argument("--data", type=Path, default=None, help="dataset root, as for python -m train")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the study (default runs/)")
    p.add_argument("--name", default="study", help="study folder name under --out (default: study)")
    p.add_argument("--recipe", default=None, help="passed to python -m train --recipe")
    p.add_argument("--executor", choices=("local", "slurm", "auto"), default="auto",
                   help="auto: slurm where sbatch is on PATH, else local (default auto)")
    p.add_argument("--parallel", type=int, default=1, help="local: runs at a time (default 1)")
    p.add_argument("--threads-per-run", type=int, default=None,
                   help="local: OMP_NUM_THREADS of each run (default: inherited)")
    p.add_argument("--gpus-per-run", type=int, default=1,
                   help="GPUs (torchrun processes) per run; > 1 launches python -m torch.distributed.run")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--timeout-min", type=int, default=3 * 24 * 60, help="slurm: time limit per job (default 3 days)")
    p.add_argument("--cpus-per-run", type=int, default=None, help="slurm: --cpus-per-task")
    p.add_argument("--mem-gb", type=int, default=None, help="slurm: memory per job")
    p.add_argument("--slurm-array-parallelism", type=int, default=None, help="slurm: array jobs at a time")
    p.add_argument("--then-evaluate", action="store_true",
                   help="when every run is done: eval.results (one row per run) into <study>/results")
    p.add_argument("--eval-weights", choices=("Final", "best"), default="Final",
                   help="checkpoint of each run to evaluate (default Final)")
    p.add_argument("--eval-args", default="", help="extra flags for eval.results, one string, e.g. '--runs 20'")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar over runs")
    return p


@dataclass(frozen=True)
class StudyPlan:
    """What the command asks for, validated: where, which runs, how each one is launched."""

    study_dir: Path
    data: Path
    models: list[str]
    seeds: list[int]
    executor: str
    train_args: list[str]
    gpus_per_run: int = 1
    resources: dict = field(default_factory=dict)

    def train_argv(self, model: str, seed: int) -> list[str]:
        """The arguments of ``python -m train`` for one run (always ``--resume auto``)."""
        return ["--network", model, "--data", str(self.data), "--seed", str(seed), "--out", str(self.study_dir),
                "--run-name", run_name(model, seed), "--resume", "auto", *self.train_args]

    def command(self, model: str, seed: int) -> list[str]:
        """The ordinary training command of one run (torch's launcher for several GPUs)."""
        launcher = [sys.executable, "-m", "train"]
        if self.gpus_per_run > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", str(self.gpus_per_run), "-m", "train"]
        return [*launcher, *self.train_argv(model, seed)]

    def log_path(self, model: str, seed: int) -> Path:
        return self.study_dir / "logs" / f"{run_name(model, seed)}.log"


def make_plan(args: argparse.Namespace, extra: Sequence[str]) -> StudyPlan:
    """Validate the arguments (train flags through train's own parser) before anything runs."""
    if not args.models:
        raise StudyError("--models is required (e.g. --models cbam eca_cbam eca_cbam_parallel)")
    if args.data is None:
        raise StudyError("--data is required (dataset root, as for python -m train)")
    if len(set(args.seeds)) != len(args.seeds) or len(set(args.models)) != len(args.models):
        raise StudyError("--models and --seeds must not repeat a value")
    if args.parallel < 1 or args.gpus_per_run < 1:
        raise StudyError("--parallel and --gpus-per-run must be >= 1")
    train_args = list(extra)
    clash = [a for a in train_args if a.split("=")[0] in RESERVED]
    if clash:
        raise StudyError(f"{clash}: set by the study for each run ({', '.join(RESERVED)}); remove them")
    if args.recipe is not None:
        train_args = ["--recipe", args.recipe, *train_args]
    if "--no-progress" not in train_args:
        train_args.append("--no-progress")  # keeps the run logs readable; the study shows its own bar
    executor = args.executor
    if executor == "auto":
        executor = "slurm" if shutil.which("sbatch") else "local"
    plan = StudyPlan(study_dir=args.out / args.name, data=args.data, models=list(args.models),
                     seeds=list(args.seeds), executor=executor, train_args=train_args,
                     gpus_per_run=args.gpus_per_run,
                     resources={"gpus_per_run": args.gpus_per_run, "partition": args.slurm_partition,
                                "timeout_min": args.timeout_min, "cpus_per_run": args.cpus_per_run,
                                "mem_gb": args.mem_gb, "parallel": args.parallel,
                                "threads_per_run": args.threads_per_run})
    try:
        train_parser().parse_args(plan.train_argv(plan.models[0], plan.seeds[0]))
    except SystemExit as exc:
        raise StudyError(f"python -m train rejects the train flags {train_args} (its message is above)") from exc
    return plan


# --------------------------------------------------------------------------- manifest


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


# --------------------------------------------------------------------------- local executor


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


# --------------------------------------------------------------------------- slurm executor


class RunJob:
    """What a SLURM array task runs: one ordinary training command, its output appended to the run's log.

    Checkpointable (submitit requeues it on timeout or preemption) because the command always
    carries ``--resume auto``: the requeued job continues from ``last.pth``.
    """

    def __init__(self, command: list[str], cwd: str, log: str) -> None:
        self.command, self.cwd, self.log = command, cwd, log

    def __call__(self) -> int:
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"== {utc_now()} slurm job {os.environ.get('SLURM_JOB_ID', '?')}: {' '.join(self.command)}\n")
            log.flush()
            code = subprocess.run(self.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise RuntimeError(f"{' '.join(self.command)} exited with {code}; see {self.log}")
        return code

    def checkpoint(self) -> object:
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(self.command, self.cwd, self.log))


def slurm_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """sacct state per job id (array tasks included); None when sacct is missing or fails."""
    if not job_ids or shutil.which("sacct") is None:
        return None
    from submitit.slurm.slurm import SlurmInfoWatcher

    mains = sorted({j.split("_")[0] for j in job_ids})
    cmd = ["sacct", "-o", "JobID,State", "--parsable2", *[a for j in mains for a in ("-j", j)]]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    info = SlurmInfoWatcher().read_info(out)
    return {j: info[j]["State"].split()[0] for j in job_ids if j in info and info[j].get("State")}


def _slurm_entries(manifest: StudyManifest) -> list[RunEntry]:
    return [e for e in manifest.runs.values() if e.job_id and not e.job_id.startswith("local:")]


def refresh_slurm(study_dir: Path, manifest: StudyManifest) -> dict[str, str] | None:
    """Update the states of submitted runs from sacct; returns sacct's answer (None: could not ask)."""
    states = slurm_states([str(e.job_id) for e in _slurm_entries(manifest)])
    if states is None:
        return None
    for entry in _slurm_entries(manifest):
        state = states.get(str(entry.job_id))
        if state is None or effective_state(entry.state, study_dir / entry.name) == "done":
            continue
        if state in SLURM_WAITING:
            entry.state = "pending"
        elif state in SLURM_RUNNING:
            entry.state = "running"
        else:
            entry.state = effective_state("failed", study_dir / entry.name)  # type: ignore[assignment]
            entry.note = None if entry.state == "done" else f"slurm {state}"
    return states


def submit_slurm(plan: StudyPlan, manifest: StudyManifest, entries: list[RunEntry], args: argparse.Namespace) -> None:
    """Submit, as one job array through submitit, the runs that are neither done nor queued/running."""
    import submitit

    states = refresh_slurm(plan.study_dir, manifest)
    for entry in entries:
        entry.state = effective_state(entry.state, plan.study_dir / entry.name)  # type: ignore[assignment]
    slurm = {id(e) for e in _slurm_entries(manifest)}
    if states is None:  # cannot ask: never submit twice what may still be queued or running
        in_flight = {id(e) for e in entries if id(e) in slurm and e.state in ("pending", "running")}
        if in_flight:
            print(f"warning: sacct unavailable: {len(in_flight)} runs with a job id are taken as queued or "
                  "running and not submitted again", file=sys.stderr)
    else:
        in_flight = {id(e) for e in entries if id(e) in slurm and e.state in ("pending", "running")
                     and states.get(str(e.job_id), "") in SLURM_WAITING | SLURM_RUNNING}
    todo = [e for e in entries if e.state != "done" and id(e) not in in_flight]
    if not todo:
        print("nothing to submit: every run is done, queued or running", file=sys.stderr)
        return
    executor = submitit.SlurmExecutor(folder=str(plan.study_dir / "slurm" / "%j"))
    params: dict = {"job_name": f"featherface_{manifest.name}", "time": args.timeout_min, "nodes": 1,
                    "ntasks_per_node": 1, "gpus_per_node": plan.gpus_per_run, "stderr_to_stdout": True}
    optional = {"partition": args.slurm_partition, "cpus_per_task": args.cpus_per_run,
                "mem": f"{args.mem_gb}GB" if args.mem_gb else None,
                "array_parallelism": args.slurm_array_parallelism}
    params |= {k: v for k, v in optional.items() if v is not None}
    executor.update_parameters(**params)
    cwd = str(Path.cwd())
    with executor.batch():
        jobs = [executor.submit(RunJob(e.command, cwd, str(e.log))) for e in todo]
    for entry, job in zip(todo, jobs, strict=True):
        entry.job_id, entry.state, entry.note = str(job.job_id), "pending", None
        entry.attempts += 1
        entry.started, entry.ended, entry.returncode = utc_now(), None, None
    write_manifest(plan.study_dir, manifest)
    print(f"submitted {len(jobs)} runs as job array {str(jobs[0].job_id).split('_')[0]}: "
          + ", ".join(f"{e.name}={e.job_id}" for e in todo), file=sys.stderr)


# --------------------------------------------------------------------------- evaluation


def evaluate(plan: StudyPlan, manifest: StudyManifest, args: argparse.Namespace) -> int:
    """eval.results over every run's weights (one row per run), then the conclusion where its CLI exists."""
    results = plan.study_dir / "results"
    cmd = [sys.executable, "-m", "eval.results", "--data", str(plan.data), "--weights-dir", str(plan.study_dir),
           "--out", str(results), "--models", *plan.models, "--all-seeds", "--checkpoint", args.eval_weights,
           *args.eval_args.split()]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    code = subprocess.run(cmd).returncode
    manifest.evaluation = {"command": cmd, "returncode": code, "results": str(results), "at": utc_now()}
    if code == 0 and hasattr(importlib.import_module("eval.conclusion"), "main"):
        conclusion = [sys.executable, "-m", "eval.conclusion", "--results", str(results), "--runs",
                      str(plan.study_dir), "--out", str(plan.study_dir / "conclusion.md")]
        print("$", " ".join(conclusion), file=sys.stderr, flush=True)
        code = subprocess.run(conclusion).returncode
        manifest.evaluation |= {"conclusion": str(plan.study_dir / "conclusion.md"), "conclusion_returncode": code}
    write_manifest(plan.study_dir, manifest)
    return code


# --------------------------------------------------------------------------- main


def show_status(study_dir: Path) -> int:
    manifest = read_manifest(study_dir)
    if manifest.executor == "slurm" and refresh_slurm(study_dir, manifest) is not None:
        write_manifest(study_dir, manifest)
    print(format_progress(study_progress(study_dir)))
    return 0


def run_study(args: argparse.Namespace, extra: Sequence[str]) -> int:
    plan = make_plan(args, extra)
    with study_lock(plan.study_dir):
        manifest = load_or_create(plan)
        entries = selected(plan, manifest)
        write_manifest(plan.study_dir, manifest)
        for entry in entries:
            if entry.state == "done":
                print(f"skip {entry.name}: done", file=sys.stderr)
        if plan.executor == "local":
            todo = [e for e in entries if e.state != "done"]
            run_local(plan, manifest, todo, args.parallel, args.threads_per_run, not args.no_progress,
                      len(entries))
        else:
            submit_slurm(plan, manifest, entries, args)
        entries = selected(plan, manifest)
        write_manifest(plan.study_dir, manifest)
        print(format_progress(study_progress(plan.study_dir)))
        failed = [e for e in entries if e.state == "failed"]
        if args.then_evaluate:
            if all(e.state == "done" for e in entries):
                code = evaluate(plan, manifest, args)
                if code:
                    return code
            else:
                print(f"--then-evaluate: {sum(e.state != 'done' for e in entries)} runs not done yet; rerun the "
                      f"same command once they are (python -m train.study --status {plan.study_dir})",
                      file=sys.stderr)
        return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    try:
        if args.status is not None:
            return show_status(args.status)
        return run_study(args, extra)
    except (StudyError, StudyManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
