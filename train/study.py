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
job array through submitit (requeued on timeout, resuming from ``last.pth``) and returns. Each job runs
this launcher's own Python (``sys.executable``) in this working directory, so the node must see both
(docs/slurm.md). ``--status`` and reruns ask ``squeue`` (and ``sacct`` where accounting exists) where
the jobs stand, and read submitit's result and log files of jobs SLURM no longer has
(``eval.study_progress.run_status``). ``auto`` is slurm where ``sbatch``, ``squeue`` and ``srun`` exist.
The manifest ``<out>/<name>/study.json`` (``core.study_manifest``) is rewritten atomically after every change.
``--then-evaluate``: once every run is done, ``eval.results`` over the study's weights, one row per run.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import importlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from core.cli_paths import CliParser, fail, input_dir, input_path, output_dir
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
from eval.study_progress import (
    JobStates,
    cluster_states,
    effective_state,
    format_progress,
    reconcile,
    slurm_job_ids,
    study_progress,
)
from train.cli import build_parser as train_parser
from train.slurm_job import RunJob

RESERVED = ("--network", "--data", "--seed", "--out", "--run-name", "--resume")
LOCK_NAME = ".study.lock"
SLURM_TOOLS = ("sbatch", "squeue", "srun")  # submit, follow, and run the job's step (submitit's script); sacct optional
# sbatch options the study sets itself: --slurm-extra must not contradict them behind the flags' back
SLURM_OWN = {"array": None, "output": None, "error": None, "open-mode": None, "signal": None, "wckey": None,
             "job-name": None, "nodes": None, "ntasks-per-node": None, "partition": "--slurm-partition",
             "time": "--timeout-min", "cpus-per-task": "--cpus-per-run", "mem": "--mem",
             "gpus-per-node": "--gpus-per-run", "gres": "--gpus-per-run", "gpus": "--gpus-per-run"}
_SLURM_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SLURM_MEM = re.compile(r"^\d+(\.\d+)?[KMGT]?B?$", re.IGNORECASE)
EPILOG = """\
examples:
  python -m train.study --models cbam eca_cbam eca_cbam_parallel --seeds 0 1 2 --data data/widerface --out runs/
  python -m train.study ... --executor slurm --slurm-partition gpu --gpus-per-run 4 --timeout-min 2880
  python -m train.study ... --executor slurm --gpus-per-run 0 --cpus-per-run 4 --mem 8G \\
      --slurm-extra account=lab --slurm-extra qos=normal --slurm-extra constraint=avx2
  python -m train.study --status runs/study
"""


class StudyError(ValueError):
    """The study cannot start: bad flags, another launcher on the folder, settings that contradict study.json."""


# --------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="python -m train.study", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                  epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--status", type=input_path, default=None, metavar="STUDY_DIR",
                   help="print the progress table of an existing study and exit")
    p.add_argument("--models", nargs="+", choices=list(MODEL_CONFIGS), default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="default 0 1 2")
    p.add_argument("--data", type=input_dir, default=None, help="dataset root, as for python -m train")
    p.add_argument("--out", type=output_dir, default="runs", help="parent folder of the study (default runs/)")
    p.add_argument("--name", default="study", help="study folder name under --out (default: study)")
    p.add_argument("--recipe", default=None, help="passed to python -m train --recipe")
    p.add_argument("--executor", choices=("local", "slurm", "auto"), default="auto",
                   help="auto: slurm where sbatch, squeue and srun are on PATH, else local (default auto)")
    p.add_argument("--parallel", type=int, default=1, help="local: runs at a time (default 1)")
    p.add_argument("--threads-per-run", type=int, default=None,
                   help="OMP_NUM_THREADS of each run (default: local inherited, slurm the job's CPUs)")
    p.add_argument("--gpus-per-run", type=int, default=1,
                   help="GPUs (torchrun processes) per run; > 1 launches python -m torch.distributed.run; "
                        "0: a CPU cluster, no GPU gres requested (default 1)")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--timeout-min", type=int, default=3 * 24 * 60, help="slurm: time limit per job (default 3 days)")
    p.add_argument("--cpus-per-run", type=int, default=None, help="slurm: --cpus-per-task")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--mem", default=None, help="slurm: --mem per job, SLURM's syntax (e.g. 16G, 500M)")
    mem.add_argument("--mem-gb", type=int, default=None, help="slurm: memory per job in GB (same as --mem NG)")
    p.add_argument("--slurm-array-parallelism", type=int, default=None, help="slurm: array jobs at a time")
    p.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="slurm: any other sbatch option, repeatable: account=lab, qos=high, constraint=a100, "
                        "exclude=node3; a KEY alone for a flag (exclusive, requeue)")
    p.add_argument("--then-evaluate", action="store_true",
                   help="when every run is done: eval.results (one row per run) into <study>/results")
    p.add_argument("--eval-weights", choices=("Final", "best"), default="Final",
                   help="checkpoint of each run to evaluate (default Final)")
    p.add_argument("--eval-args", default="", help="extra flags for eval.results, one string, e.g. '--runs 20'")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar over runs")
    p.add_argument("--reset", action="store_true",
                   help="set an unreadable study.json aside (study.json.bad-<time>) and write a new one from this "
                        "command; finished runs are found from their folders and kept, interrupted ones resume")
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
    if args.parallel < 1 or args.gpus_per_run < 0:
        raise StudyError("--parallel must be >= 1 and --gpus-per-run >= 0")
    train_args = list(extra)
    clash = [a for a in train_args if a.split("=")[0] in RESERVED]
    if clash:
        raise StudyError(f"{clash}: set by the study for each run ({', '.join(RESERVED)}); remove them")
    if args.recipe is not None:
        train_args = ["--recipe", args.recipe, *train_args]
    if "--no-progress" not in train_args:
        train_args.append("--no-progress")  # keeps the run logs readable; the study shows its own bar
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    executor = args.executor
    if executor == "auto":
        executor = "local" if missing else "slurm"
    if executor == "slurm" and missing:
        raise StudyError(f"--executor slurm needs {', '.join(SLURM_TOOLS)} on PATH ({', '.join(missing)} not "
                         "found): run it on a cluster login node, or use --executor local")
    mem = args.mem if args.mem is not None else (f"{args.mem_gb}G" if args.mem_gb else None)
    if mem is not None and not _SLURM_MEM.match(mem):
        raise StudyError(f"--mem {mem!r}: expected SLURM's syntax, a number with an optional unit (16G, 500M)")
    extra_sbatch = parse_slurm_extra(args.slurm_extra)
    plan = StudyPlan(study_dir=args.out / args.name, data=args.data, models=list(args.models),
                     seeds=list(args.seeds), executor=executor, train_args=train_args,
                     gpus_per_run=args.gpus_per_run,
                     resources={"gpus_per_run": args.gpus_per_run, "partition": args.slurm_partition,
                                "timeout_min": args.timeout_min, "cpus_per_run": args.cpus_per_run,
                                "mem": mem, "slurm_extra": extra_sbatch, "parallel": args.parallel,
                                "threads_per_run": args.threads_per_run, "python": sys.executable})
    try:
        train_parser().parse_args(plan.train_argv(plan.models[0], plan.seeds[0]))
    except SystemExit as exc:
        raise StudyError(f"python -m train rejects the train flags {train_args} (its message is above)") from exc
    return plan


def parse_slurm_extra(items: Sequence[str]) -> dict[str, str | bool]:
    """``--slurm-extra KEY=VALUE`` (or ``KEY`` for a flag) -> sbatch options; the study's own are refused."""
    out: dict[str, str | bool] = {}
    for item in items:
        key, has_value, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not _SLURM_KEY.match(key) or (has_value and not value):
            raise StudyError(f"--slurm-extra {item!r}: expected KEY=VALUE (e.g. account=lab, qos=high) or a KEY "
                             "alone for a flag (e.g. exclusive)")
        own = key.replace("_", "-").lower()
        if own in SLURM_OWN:
            instead = f"; use {SLURM_OWN[own]}" if SLURM_OWN[own] else ""
            raise StudyError(f"--slurm-extra {item!r}: the study sets --{own} itself{instead}")
        out[key.replace("_", "-")] = value if has_value else True
    return out


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
    """Print the progress table; SLURM runs are asked of the cluster once, and the answer saved where no
    launcher holds the study (a launcher's own write must not be overwritten by an older view)."""
    manifest = read_manifest(study_dir)
    ids = slurm_job_ids(manifest)
    jobs = cluster_states(ids) if ids else None
    if ids:
        with contextlib.suppress(StudyError, OSError), study_lock(study_dir):
            manifest = read_manifest(study_dir)
            reconcile(study_dir, manifest, jobs)
            write_manifest(study_dir, manifest)
    print(format_progress(study_progress(study_dir, cluster=lambda _ids: jobs)))
    return 0


def run_study(args: argparse.Namespace, extra: Sequence[str]) -> int:
    plan = make_plan(args, extra)
    with study_lock(plan.study_dir):
        if args.reset:
            set_aside_manifest(plan.study_dir)
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


def check_args(argv: Sequence[str]) -> None:
    """Parse and validate a command line, train flags included, without running or writing anything (the
    documentation's command test calls it); `StudyError` or SystemExit as the real command would."""
    args, extra = build_parser().parse_known_args(argv)
    if args.status is None:
        make_plan(args, extra)


def set_aside_manifest(study_dir: Path) -> None:
    """--reset: keep the old study.json beside the new one (never deleted), under a name nothing reads."""
    old = manifest_path(study_dir)
    if old.is_file():
        aside = old.with_name(f"{old.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        old.rename(aside)
        print(f"--reset: {old} set aside as {aside.name}; finished runs are found from their folders",
              file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.status is not None:
            return show_status(args.status)
        return run_study(args, extra)
    except (StudyError, StudyManifestError) as exc:
        return fail(exc)


if __name__ == "__main__":
    raise SystemExit(main())
