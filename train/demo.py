"""Build the shipped demo: synthetic data -> train the three models on CPU -> evaluate -> assets/demo.

    python -m train.demo --out assets/demo

Writes, in the layout the dashboard reads:
  <out>/runs/<model>_synthetic_s<seed>/{run.json, events.out.tfevents.*}   (checkpoints not shipped)
  <out>/weights/<model>.pth                                                 (final weights, ~2 MB each)
  <out>/results/{comparison_table.csv, latency_benchmark.csv, reference_results.csv, eval/*.json}
  <out>/results/compare_ap/<A>__<B>__synthetic.json   paired image-bootstrap AP differences (eval.compare_ap)
  <out>/results/attention_stats.json                  heatmap quality over the val images (eval.attention_stats)
  <out>/results/figures/attention_heatmaps__<model>__synthetic__<weights tag>.png
  <out>/manifest.json   command, seed, epochs, dataset ("synthetic") and the numbers obtained
Every number it produces comes from the synthetic set and is labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from core.artifacts import COMPARISON_COLUMNS, COMPARISON_CSV, MANIFEST_JSON, atomic_write_json, read_results_csv
from core.config import COMPARED_MODELS
from core.data.synth import generate_dataset
from eval.latency import DEFAULT_ROUNDS, DEFAULT_WARMUP


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("assets/demo"), help="demo folder (default assets/demo)")
    p.add_argument("--data", type=Path, default=Path("data/synth_demo"), help="synthetic set (made if absent)")
    p.add_argument("--num-train", type=int, default=400)
    p.add_argument("--num-val", type=int, default=100)
    p.add_argument("--max-size", type=int, default=480, help="longest side of the synthetic images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=4)
    p.add_argument("--models", nargs="+", default=list(COMPARED_MODELS), choices=list(COMPARED_MODELS))
    p.add_argument("--latency-threads", type=int, default=2,
                   help="CPU threads for the interleaved latency rounds (fixed and recorded; default 2)")
    p.add_argument("--eval-only", action="store_true",
                   help="re-run the evaluation of the existing demo weights (no data generation, no training)")
    p.add_argument("--sequential", action="store_true",
                   help="train one model at a time with all cores (default: the models side by side, 1 thread each)")
    return p.parse_args(argv)


def train_command(args: argparse.Namespace, model: str, runs: Path) -> list[str]:
    return [
        sys.executable, "-m", "train", "--network", model, "--data", str(args.data),
        "--max-epoch", str(args.epochs), "--batch-size", str(args.batch_size), "--img-size", str(args.img_size),
        "--lr", str(args.lr), "--warmup-epochs", "1", "--eval-every", str(args.eval_every),
        "--eval-size", str(args.max_size), "--workers", "0", "--seed", str(args.seed), "--device", "cpu",
        "--out", str(runs), "--run-name", f"{model}_synthetic_s{args.seed}", "--resume", "auto", "--no-progress",
    ]


def train_all(args: argparse.Namespace, runs: Path) -> None:
    """Run the training CLI per model; side by side each process gets one thread (fastest on 2 cores)."""
    env = dict(os.environ, OMP_NUM_THREADS="1") if not args.sequential else dict(os.environ)
    procs = []
    for model in args.models:
        log = open(runs / f"{model}.log", "a")  # noqa: SIM115  (closed below, after the process ends)
        cmd = train_command(args, model, runs)
        print("$", " ".join(cmd), flush=True)
        procs.append((model, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        if args.sequential:
            procs[-1][1].wait()
    failed = []
    for model, proc, log in procs:
        if proc.wait() != 0:
            failed.append(model)
        log.close()
    if failed:
        raise SystemExit(f"training failed for {failed}; see {runs}/<model>.log")


def train_and_collect(args: argparse.Namespace) -> dict:
    """Synthetic data, the three trainings, final weights copied to <out>/weights; returns manifest fields."""
    started = time.time()
    if not (args.data / MANIFEST_JSON).is_file():
        generate_dataset(args.data, args.num_train, args.num_val, args.seed, max_size=args.max_size, progress=True)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    train_all(args, runs)
    weights = args.out / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        run = runs / f"{model}_synthetic_s{args.seed}"
        shutil.copyfile(run / "weights" / "Final.pth", weights / f"{model}.pth")
        shutil.rmtree(run / "weights")  # last/best (~8 MB a model) are not shipped; Final is, above
    return {
        "dataset": "synthetic",
        "note": "Demo numbers come from a small synthetic set, not WIDERFace.",
        "command": "python -m train.demo " + " ".join(a for a in sys.argv[1:] if a != "--eval-only"),
        "seed": args.seed, "epochs": args.epochs, "img_size": args.img_size, "batch_size": args.batch_size,
        "num_train": args.num_train, "num_val": args.num_val, "data": str(args.data), "models": args.models,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_minutes": round((time.time() - started) / 60, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    manifest_path = args.out / MANIFEST_JSON
    if args.eval_only:
        if not manifest_path.is_file():
            raise SystemExit(f"--eval-only needs an existing demo at {args.out} (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        data = Path(manifest.get("data", args.data))
        if not (data / MANIFEST_JSON).is_file():  # the same seed gives byte-identical files
            generate_dataset(data, manifest["num_train"], manifest["num_val"], manifest["seed"],
                             max_size=args.max_size, progress=True)
        args.data = data
    else:
        manifest = train_and_collect(args)
    subprocess.run([sys.executable, "-m", "eval.results", "--data", str(args.data),
                    "--weights-dir", str(args.out / "weights"), "--out", str(args.out / "results"),
                    "--models", *args.models, "--threads", str(args.latency_threads),
                    "--image", "assets/samples/astronaut.png"], check=True)
    # AP differences need the predictions (paired image bootstrap), so they run before those are deleted.
    subprocess.run([sys.executable, "-m", "eval.compare_ap", "--results", str(args.out / "results")], check=True)
    subprocess.run([sys.executable, "-m", "eval.attention_stats", "--data", str(args.data),
                    "--weights-dir", str(args.out / "weights"), "--models", *args.models,
                    "--out", str(args.out / "results" / "attention_stats.json"),
                    "--threads", str(args.latency_threads)], check=True)
    shutil.rmtree(args.out / "results" / "predictions")  # 20+ MB of text, reproducible from the weights
    table = read_results_csv(args.out / "results" / COMPARISON_CSV, COMPARISON_COLUMNS)
    manifest["evaluated"] = datetime.now(UTC).isoformat(timespec="seconds")
    manifest["latency"] = {"rounds": DEFAULT_ROUNDS, "warmup_rounds": DEFAULT_WARMUP,
                           "threads": args.latency_threads, "input": "1x3x640x640",
                           "method": "interleaved rounds, paired per-round differences, 95% bootstrap CIs"}
    manifest["results"] = table[["model", "easy", "medium", "hard", "mAP", "latency_ms"]].to_dict(orient="records")
    atomic_write_json(manifest_path, manifest)
    print(f"demo written to {args.out}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
