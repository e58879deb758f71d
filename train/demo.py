"""Build the shipped demo: a preset of ``train.study.run`` on a small synthetic set, then ``eval.results``.

    .venv/bin/python -m train.demo                              # data + 3 models x 3 seeds + evaluation -> build/demo
    .venv/bin/python -m train.demo --eval-only                  # re-evaluate the shipped weights -> build/demo
    .venv/bin/python -m train.demo --eval-only --update-shipped # ... and rewrite the shipped assets/demo

The shipped demo (`assets/demo`, tracked files the dashboard opens on) is only written with
`--update-shipped`; every other build goes to `--out` (default `build/demo`).

Writes, in the layout the dashboard reads:
  <out>/runs/study.json, <out>/runs/logs/*.log                      the study manifest and run logs
  <out>/runs/<model>_s<seed>/{run.json, events.out.tfevents.*}      (checkpoints not shipped)
  <out>/weights/<model>_s<seed>.pth                                 final weights, ~2 MB each
  <out>/results/{comparison_table.csv (one row per run), latency_benchmark.csv, latency_runs.csv,
                 reference_results.csv, eval/*.json, figures/*.png (first seed of each model)}
  <out>/results/compare_ap/<A>__<B>__synthetic.json   paired image-bootstrap AP differences (eval.verdicts.paired_ap)
  <out>/results/attention_stats.json                  heatmap quality over the val images (eval.attention.measure)
  <out>/manifest.json   command, settings (sizes, epochs, seeds), dataset ("synthetic") and the numbers
Every number it produces comes from the synthetic set and is labelled so. A killed build continues
where it stopped when the same command is run again (the study resumes its runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import train.study.run as study
from core.config import COMPARED_MODELS, MODEL_CONFIGS
from core.io.cli_paths import CliParser, check_defaults, fail, input_dir, output_dir
from core.lab.artifacts import (
    COMPARISON_COLUMNS,
    COMPARISON_CSV,
    LATENCY_CSV,
    LATENCY_RUNS_CSV,
    MANIFEST_JSON,
    ResultsFileError,
    atomic_write_json,
)
from core.lab.study_manifest import read_manifest, run_name
from core.synth.generate import generate_dataset
from eval.latency.timing import DEFAULT_ROUNDS, DEFAULT_WARMUP
from eval.runs.results_csv import read_results_csv

STUDY_NAME = "runs"  # the study folder under --out: <out>/runs/<model>_s<seed>
SETTINGS = ("num_train", "num_val", "max_size", "seed", "seeds", "epochs", "batch_size", "img_size", "lr",
            "lr_steps", "eval_every", "models")


SHIPPED = Path("assets/demo")  # the demo the repository ships (tracked files)
DEFAULT_OUT = Path("build/demo")


def build_parser() -> CliParser:
    p = CliParser(prog="python -m train.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=output_dir, default=None,
                   help=f"demo folder to write (default {DEFAULT_OUT}; {SHIPPED} only with --update-shipped)")
    p.add_argument("--update-shipped", action="store_true",
                   help=f"write the shipped demo in {SHIPPED} (tracked files: new dates, timings and numbers)")
    p.add_argument("--from", dest="source", type=input_dir, default=SHIPPED,
                   help=f"--eval-only: the demo whose weights are evaluated (default {SHIPPED}); copied into --out "
                        "first when --out is another folder")
    p.add_argument("--data", type=output_dir, default="data/synth_demo", help="synthetic set (made if absent)")
    p.add_argument("--num-train", type=int, default=192)
    p.add_argument("--num-val", type=int, default=80)
    p.add_argument("--max-size", type=int, default=384, help="longest side of the synthetic images")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic set")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds per model")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=192)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-steps", type=int, nargs="+", default=[15, 18], metavar="EPOCH",
                   help="LR x0.1 after these epochs (default 15 18): the recipe's milestones scaled to a short run "
                        "(190/350, 220/350) drop the LR before a small model has taken off")
    p.add_argument("--eval-every", type=int, default=4)
    p.add_argument("--models", nargs="+", default=list(COMPARED_MODELS), choices=list(MODEL_CONFIGS))
    p.add_argument("--parallel", type=int, default=3, help="runs at a time, one thread each (default 3)")
    p.add_argument("--attention-images", type=int, default=16,
                   help="val images (first N with faces) for eval.attention.measure (default 16: it times 9 models)")
    p.add_argument("--latency-rounds", type=int, default=DEFAULT_ROUNDS,
                   help=f"interleaved latency rounds (default {DEFAULT_ROUNDS}; fewer on a loaded machine, recorded)")
    p.add_argument("--latency-threads", type=int, default=2,
                   help="CPU threads for the interleaved latency rounds (fixed and recorded; default 2)")
    p.add_argument("--eval-only", action="store_true",
                   help="re-run the evaluation of the existing demo weights (no training; the synthetic set "
                        "is regenerated from the manifest's settings if absent)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed flags with `--out` settled: the shipped folder only when asked for by --update-shipped."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_defaults(parser, args, skip=() if args.eval_only else ("--from",))
    if args.update_shipped and args.out is not None and not _is_shipped(args.out):
        parser.error(f"--update-shipped writes {SHIPPED}; drop --out {args.out}")
    if args.out is None:
        args.out = SHIPPED if args.update_shipped else DEFAULT_OUT
    if _is_shipped(args.out) and not args.update_shipped:
        parser.error(f"--out {args.out} is the shipped demo (tracked files); add --update-shipped to rewrite it, or "
                     f"write elsewhere (default {DEFAULT_OUT})")
    return args


def _is_shipped(path: Path) -> bool:
    return path.resolve() == SHIPPED.resolve()


def copy_demo(source: Path, out: Path) -> None:
    """The demo's manifest, weights and runs from `source` into `out` (an --eval-only build elsewhere)."""
    if not (source / MANIFEST_JSON).is_file():
        raise SystemExit(f"--eval-only needs an existing demo at {source} (no manifest.json)")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / MANIFEST_JSON, out / MANIFEST_JSON)
    for part in ("weights", STUDY_NAME):
        if (source / part).is_dir():
            shutil.copytree(source / part, out / part, dirs_exist_ok=True)


def study_args(args: argparse.Namespace) -> list[str]:
    """The ``train.study.run`` command line of the demo: the small synthetic settings, CPU, one thread per run."""
    return [
        "--models", *args.models, "--seeds", *map(str, args.seeds), "--data", str(args.data),
        "--out", str(args.out), "--name", STUDY_NAME, "--executor", "local", "--parallel", str(args.parallel),
        "--threads-per-run", "1", "--no-progress",
        "--max-epoch", str(args.epochs), "--batch-size", str(args.batch_size), "--img-size", str(args.img_size),
        "--lr", str(args.lr), "--lr-steps", *map(str, args.lr_steps), "--warmup-epochs", "1",
        "--eval-every", str(args.eval_every),
        "--eval-size", str(args.max_size), "--workers", "0", "--device", "cpu",
    ]


def ensure_data(args: argparse.Namespace) -> None:
    if not (args.data / MANIFEST_JSON).is_file():  # the same seed gives byte-identical files
        generate_dataset(args.data, args.num_train, args.num_val, args.seed, min_size=min(256, args.max_size),
                         max_size=args.max_size, workers=2, progress=True)


def training_minutes(study_dir: Path) -> float | None:
    """Wall time of the study from study.json: first run started to last run ended (resumed builds included)."""
    runs = read_manifest(study_dir).runs.values()
    starts = [datetime.fromisoformat(r.started) for r in runs if r.started]
    ends = [datetime.fromisoformat(r.ended) for r in runs if r.ended]
    return round((max(ends) - min(starts)).total_seconds() / 60, 1) if starts and ends else None


def train_and_collect(args: argparse.Namespace) -> dict:
    """Synthetic data, the study, final weights moved to <out>/weights; returns the manifest fields."""
    ensure_data(args)
    code = study.main(study_args(args))
    if code != 0:
        raise SystemExit(f"the demo study did not finish (exit {code}); see {args.out / STUDY_NAME}/logs and "
                         f"python -m train.study --status {args.out / STUDY_NAME}")
    weights = args.out / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        for seed in args.seeds:
            run, shipped = args.out / STUDY_NAME / run_name(model, seed), weights / f"{run_name(model, seed)}.pth"
            if not (run / "weights" / "Final.pth").is_file() and shipped.is_file():
                continue  # moved by an earlier build: the study found the run done
            shutil.copyfile(run / "weights" / "Final.pth", shipped)
            shutil.rmtree(run / "weights")  # last/best (~8 MB a run) are not shipped; Final is, above
    (args.out / STUDY_NAME / study.LOCK_NAME).unlink(missing_ok=True)
    return {
        "dataset": "synthetic",
        "note": "Demo numbers come from a small synthetic set, not WIDERFace.",
        "command": "python -m train.demo " + " ".join(a for a in sys.argv[1:] if a != "--eval-only"),
        "study_command": "python -m train.study " + " ".join(study_args(args)),
        **{k: getattr(args, k) for k in SETTINGS}, "data": str(args.data),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_minutes": training_minutes(args.out / STUDY_NAME),
    }


def shipped_bytes(out: Path) -> dict[str, int]:
    """Bytes per top-level part of the demo (weights, runs, results), to keep the checkout small."""
    return {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            for p in sorted(out.iterdir()) if p.is_dir()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return build_demo(args)
    except subprocess.CalledProcessError as exc:
        return fail(f"{' '.join(map(str, exc.cmd[1:3]))} stopped with exit {exc.returncode} (its message is above); "
                    f"the demo in {args.out} is incomplete: rerun with --eval-only once that is fixed")
    except (OSError, ValueError, ResultsFileError) as exc:  # FileExistsError from the synthetic set, StudyError
        return fail(exc)


def build_demo(args: argparse.Namespace) -> int:
    """Train (or, with --eval-only, reuse) the demo weights, then evaluate them into <out>/results."""
    manifest_path = args.out / MANIFEST_JSON
    if args.eval_only:
        if not manifest_path.is_file() and args.source.resolve() != args.out.resolve():
            copy_demo(args.source, args.out)
        if not manifest_path.is_file():
            raise SystemExit(f"--eval-only needs an existing demo at {args.out} (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        for key in ("num_train", "num_val", "max_size", "seed", "models"):
            if key in manifest:
                setattr(args, key, manifest[key])
        args.data = Path(manifest.get("data", args.data))
        ensure_data(args)
    else:
        manifest = train_and_collect(args)
        atomic_write_json(manifest_path, manifest)  # an interrupted evaluation can be finished with --eval-only
    results, weights = args.out / "results", args.out / "weights"
    for old in (LATENCY_CSV, LATENCY_RUNS_CSV):  # a demo build re-measures: one latency session, not appended
        (results / old).unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    subprocess.run([sys.executable, "-m", "eval.results", "--data", str(args.data), "--weights-dir", str(weights),
                    "--out", str(results), "--models", *args.models, "--all-seeds", "--figures-per-model",
                    "--rounds", str(args.latency_rounds), "--threads", str(args.latency_threads),
                    "--image", "assets/samples/astronaut.png"], check=True)
    # AP differences need the predictions (paired image bootstrap), so they run before those are deleted.
    subprocess.run([sys.executable, "-m", "eval.compare_ap", "--results", str(results)], check=True)
    subprocess.run([sys.executable, "-m", "eval.attention_stats", "--data", str(args.data),
                    "--weights-dir", str(weights), "--models", *args.models, "--all-seeds",
                    "--limit", str(args.attention_images),
                    "--out", str(results / "attention_stats.json"), "--threads", str(args.latency_threads)],
                   check=True)
    shutil.rmtree(results / "predictions")  # megabytes of text, reproducible from the weights
    table = read_results_csv(results / COMPARISON_CSV, COMPARISON_COLUMNS)
    manifest["evaluated"] = datetime.now(UTC).isoformat(timespec="seconds")
    manifest["attention_images"] = args.attention_images
    manifest["latency"] = {"rounds": args.latency_rounds, "warmup_rounds": DEFAULT_WARMUP,
                           "threads": args.latency_threads, "input": "1x3x640x640",
                           "method": "interleaved rounds, paired per-round differences, 95% bootstrap CIs",
                           "load_average_1min": {"eval_start": round(load_before, 2),
                                                 "eval_end": round(os.getloadavg()[0], 2)}}
    manifest["results"] = table[["model", "seed", "easy", "medium", "hard", "mAP", "latency_ms"]].to_dict(
        orient="records")
    manifest["shipped_bytes"] = shipped_bytes(args.out)
    atomic_write_json(manifest_path, manifest)
    print(f"demo written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
