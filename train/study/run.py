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
(``eval.runs.study_progress.run_status``). ``auto`` is slurm where ``sbatch``, ``squeue`` and ``srun`` exist.
The manifest ``<out>/<name>/study.json`` (``core.lab.study_manifest``) is rewritten atomically after every change.
``--then-evaluate``: once every run is done, ``eval.results`` over the study's weights, one row per run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core.config import MODEL_CONFIGS
from core.io.cli_paths import CliParser, fail, input_dir, input_path, output_dir
from core.lab.study_manifest import (
    StudyManifest,
    StudyManifestError,
    manifest_path,
    read_manifest,
    utc_now,
    write_manifest,
)
from eval.runs.cluster_states import cluster_states, slurm_job_ids
from eval.runs.study_progress import format_progress, reconcile, study_progress
from train.study.local import run_local
from train.study.manifest import load_or_create, selected, study_lock
from train.study.plan import StudyError, StudyPlan, make_plan
from train.study.slurm import submit_slurm

EPILOG = """\
examples:
  python -m train.study --models cbam eca_cbam eca_cbam_parallel --seeds 0 1 2 --data data/widerface --out runs/
  python -m train.study ... --executor slurm --slurm-partition gpu --gpus-per-run 4 --timeout-min 2880
  python -m train.study ... --executor slurm --gpus-per-run 0 --cpus-per-run 4 --mem 8G \\
      --slurm-extra account=lab --slurm-extra qos=normal --slurm-extra constraint=avx2
  python -m train.study --status runs/study
"""


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


def evaluate(plan: StudyPlan, manifest: StudyManifest, args: argparse.Namespace) -> int:
    """eval.results over every run's weights (one row per run), then the conclusion where its CLI exists."""
    results = plan.study_dir / "results"
    cmd = [sys.executable, "-m", "eval.results", "--data", str(plan.data), "--weights-dir", str(plan.study_dir),
           "--out", str(results), "--models", *plan.models, "--all-seeds", "--checkpoint", args.eval_weights,
           *args.eval_args.split()]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    code = subprocess.run(cmd).returncode
    manifest.evaluation = {"command": cmd, "returncode": code, "results": str(results), "at": utc_now()}
    if code == 0 and hasattr(importlib.import_module("eval.verdicts.conclusion"), "main"):
        conclusion = [sys.executable, "-m", "eval.conclusion", "--results", str(results), "--runs",
                      str(plan.study_dir), "--out", str(plan.study_dir / "conclusion.md")]
        print("$", " ".join(conclusion), file=sys.stderr, flush=True)
        code = subprocess.run(conclusion).returncode
        manifest.evaluation |= {"conclusion": str(plan.study_dir / "conclusion.md"), "conclusion_returncode": code}
    write_manifest(plan.study_dir, manifest)
    return code


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
