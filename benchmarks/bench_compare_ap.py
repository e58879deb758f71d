"""Paired AP bootstrap (eval.verdicts.paired_ap) on the full real WIDER FACE val ground truth.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_compare_ap --out benchmarks/results/compare_ap.txt

Two full synthetic prediction sets (benchmarks.bench_evaluator.synthetic_predictions, ~50 boxes per
image, seeds 0 and 1) are written as submission folders; then the CLI runs as a whole process
(`python -m eval.compare_ap ... --resamples 1000`), timed wall-clock from start to exit, --runs
times (goal: <= 10 s), with its CPU time (user + sys). In-process, the script also checks that the
full-set delta equals two `eval.widerface.protocol.evaluate` runs, that A vs A gives [0, 0], and that one
resample's AP equals a plain evaluation of that resampled image set spelled out (images repeated),
timing that naive way per resample beside the vectorised one.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_evaluator import synthetic_predictions
from core.data.wider_gt import SETTINGS, GTImage, WiderGT, load_wider_gt
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, input_dir, output_file
from eval.verdicts.paired_ap import _Counts, _resampled_ap, compare_predictions
from eval.widerface.protocol import counted_subsets, evaluate
from eval.widerface.submission import write_predictions
from tests.conftest import find_real_wider_gt


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f}"


def spelled_out(gt: WiderGT, pred: dict, weights: np.ndarray) -> tuple[WiderGT, dict]:
    """The resampled image set as real images: image i repeated weights[i] times."""
    images, out = [], {}
    for im, w in zip(gt.images, weights, strict=True):
        for j in range(int(w)):
            images.append(GTImage(im.event, f"{im.name}#{j}", im.boxes, im.attributes, im.keep))
            out.setdefault(im.event, {})[f"{im.name}#{j}"] = pred[im.event][im.name]
    return WiderGT(tuple(images)), out


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_compare_ap", description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=input_dir, default=find_real_wider_gt())
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="whole-process CLI runs")
    parser.add_argument("--out", type=output_file, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_checked(argv)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say("Paired AP bootstrap benchmark: python -m eval.compare_ap on the real WIDER FACE val ground truth")
    say(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPU(s), {platform.machine()}")
    say(f"at start: {load()}")
    gt = load_wider_gt(args.gt)
    pred_a, pred_b = synthetic_predictions(gt, 0), synthetic_predictions(gt, 1)
    n_boxes = sum(len(b) for imgs in pred_a.values() for b in imgs.values())
    say(f"ground truth: {len(gt)} images, {gt.num_faces} faces; predictions: {n_boxes} boxes per set "
        "(synthetic detector, seeds 0 and 1 — timing data, not WIDERFace results)")

    with tempfile.TemporaryDirectory() as tmp:
        write_predictions(Path(tmp) / "a", pred_a)
        write_predictions(Path(tmp) / "b", pred_b)
        cmd = [sys.executable, "-m", "eval.compare_ap", "--pred-a", f"{tmp}/a", "--pred-b", f"{tmp}/b",
               "--gt", str(args.gt), "--resamples", str(args.resamples), "--seed", "0", "--json", f"{tmp}/out.json"]
        say(f"command: python -m eval.compare_ap --pred-a A --pred-b B --gt {args.gt} "
            f"--resamples {args.resamples} --seed 0 --json OUT")
        times, cpu = [], []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode:
                say(f"CLI failed ({done.returncode}): {done.stderr.strip()}")
                return 1
        cli = json.loads((Path(tmp) / "out.json").read_text())
    say(f"whole process (start, read GT + 2 x {len(gt)} files, match, {args.resamples} resamples, JSON, exit): "
        f"median {statistics.median(times):.2f} s of {args.runs} runs ({', '.join(f'{t:.2f}' for t in times)} s); "
        f"goal <= 10 s: {statistics.median(times) <= 10}")
    say(f"CPU time of the process (user + sys, less sensitive to the machine's load): median "
        f"{statistics.median(cpu):.2f} s ({', '.join(f'{t:.2f}' for t in cpu)} s)")
    say(f"after the CLI runs: {load()}")
    say("CLI output (B = seed 1 vs A = seed 0):")
    for s in (*SETTINGS, "mAP"):
        r = cli["settings"][s]
        say(f"  {s:<7} A {r['ap_a']:.4f}  B {r['ap_b']:.4f}  delta {r['delta']:+.4f}  "
            f"95% CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]  {r['verdict']}")

    ea, eb = evaluate(pred_a, gt).ap, evaluate(pred_b, gt).ap
    same = all(cli["settings"][s]["delta"] == eb[s] - ea[s] for s in SETTINGS)
    say(f"full-set delta identical to two eval.widerface.protocol runs: {same}")
    start = time.perf_counter()
    self_cmp = compare_predictions(pred_a, pred_a, gt, dataset="widerface", resamples=args.resamples)
    t_self = time.perf_counter() - start
    zero = all((r["delta"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0) for r in self_cmp["settings"].values())
    say(f"A vs A: delta 0 and CI [0, 0] everywhere: {zero} (in-process {t_self:.2f} s incl. matching twice)")

    # One resample, vectorised vs spelled out (scores pinned to the full-set bounds, as the bootstrap keeps them).
    rng = np.random.default_rng(0)
    weights = np.bincount(rng.integers(0, len(gt), len(gt)), minlength=len(gt))
    masks = [m for g, _, m in counted_subsets(gt) if g == "setting"]
    counts = _Counts(pred_a, gt, masks, 0.5, 1000)
    owner = np.repeat(np.arange(len(gt)), [im.num_faces for im in gt.images])
    faces = np.stack([np.bincount(owner[m], minlength=len(gt)) for m in masks], axis=1).astype(float)
    hist_t = counts.hist.T.tocsr()
    start = time.perf_counter()
    fast = _resampled_ap(hist_t, faces, weights[None].astype(float), 1, len(masks), 1000)[0, :, 0]
    t_fast = time.perf_counter() - start
    dup_gt, dup_pred = spelled_out(gt, pred_a, weights)
    lo, hi = evaluate(pred_a, gt).score_range
    dup_pred["99--pin"] = {"pin": np.array([[0, 0, 4, 4, lo], [0, 0, 4, 4, hi]])}
    start = time.perf_counter()
    slow = evaluate(dup_pred, dup_gt)
    t_slow = time.perf_counter() - start
    diff = max(abs(fast[i] - slow.ap[s]) for i, s in enumerate(SETTINGS))
    say(f"one resample: vectorised {1000 * t_fast:.1f} ms (a single resample, no batching) vs evaluate() on the "
        f"spelled-out image set {1000 * t_slow:.0f} ms; max |AP diff| {diff:.1e}")
    say(f"at end: {load()}")
    ok = same and zero and diff <= 1e-12 and statistics.median(times) <= 10
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
