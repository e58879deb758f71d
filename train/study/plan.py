"""What a study is: the (model, seed) runs, their training flags and the SLURM options, checked before anything
starts."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.lab.study_manifest import (
    run_name,
)
from train.cli import build_parser as train_parser

RESERVED = ("--network", "--data", "--seed", "--out", "--run-name", "--resume")


SLURM_TOOLS = ("sbatch", "squeue", "srun")  # submit, follow, and run the job's step (submitit's script); sacct optional


# sbatch options the study sets itself: --slurm-extra must not contradict them behind the flags' back
SLURM_OWN = {"array": None, "output": None, "error": None, "open-mode": None, "signal": None, "wckey": None,
             "job-name": None, "nodes": None, "ntasks-per-node": None, "partition": "--slurm-partition",
             "time": "--timeout-min", "cpus-per-task": "--cpus-per-run", "mem": "--mem",
             "gpus-per-node": "--gpus-per-run", "gres": "--gpus-per-run", "gpus": "--gpus-per-run"}


_SLURM_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


_SLURM_MEM = re.compile(r"^\d+(\.\d+)?[KMGT]?B?$", re.IGNORECASE)


class StudyError(ValueError):
    """The study cannot start: bad flags, another launcher on the folder, settings that contradict study.json."""


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
