"""Vectorised WIDER FACE evaluator vs the loop oracle on the full real val ground truth.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_evaluator --out benchmarks/results/evaluator.txt

Predictions are synthetic but full scale: every face is detected with a probability that grows
with its height, its box jittered; false alarms are added so an image has about 50 boxes. The
vectorised ``evaluate`` computes easy/medium/hard plus the 13 breakdown subsets; the oracle
(tests/eval/widerface/test_protocol.py, loops shaped like RetinaFace's evaluation.py) computes only
easy/medium/hard, so the ratio understates the gap. Times are wall-clock on a shared machine:
median of --runs for the vectorised one, a single run for the oracle.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from core.data.wider_gt import SETTINGS, WiderGT, load_wider_gt
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, input_dir, output_file
from eval.widerface.protocol import evaluate
from eval.widerface.submission import read_predictions, write_predictions
from tests.conftest import find_real_wider_gt
from tests.eval.widerface.test_protocol import oracle_evaluate

DEFAULT_GT = find_real_wider_gt()


def synthetic_predictions(gt: WiderGT, seed: int, per_image: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """Jittered ground truth plus false alarms; scores higher for detections than for false alarms."""
    rng = np.random.default_rng(seed)
    pred: dict[str, dict[str, np.ndarray]] = {}
    for im in gt.images:
        b = im.boxes
        found = b[rng.random(len(b)) < np.clip(b[:, 3] / 25.0, 0.05, 0.95)]
        jitter = rng.normal(0.0, 0.08, found.shape) * np.maximum(found[:, 2:3], 2.0)
        det = np.hstack([found + jitter, rng.beta(5, 2, (len(found), 1))])
        n_fa = max(int(rng.poisson(per_image)) - len(det), 0)
        x_max = float(max(1024.0, (b[:, 0] + b[:, 2]).max(initial=0)))
        fa_xy = rng.uniform(0.0, x_max, (n_fa, 2))
        fa_wh = rng.uniform(4.0, 120.0, (n_fa, 2))
        fa = np.hstack([fa_xy, fa_wh, rng.beta(1.5, 5, (n_fa, 1))])
        rows = np.vstack([det, fa])
        rows[:, 2:4] = np.abs(rows[:, 2:4])
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
        pred.setdefault(im.event, {})[im.name] = rows
    return pred


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_evaluator", description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=input_dir, default=DEFAULT_GT)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=output_file, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_checked(argv)

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say("WIDER FACE evaluator benchmark: vectorised eval.widerface.protocol.evaluate vs loop oracle")
    say(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPU(s), {platform.machine()}")
    gt, t_gt = timed(load_wider_gt, args.gt)
    say(f"ground truth: {len(gt.events)} events, {len(gt)} images, {gt.num_faces} faces (read in {t_gt:.2f} s)")
    pred = synthetic_predictions(gt, args.seed)
    n_pred = sum(len(b) for imgs in pred.values() for b in imgs.values())
    say(f"predictions: {n_pred} boxes, {n_pred / len(gt):.1f} per image (seed {args.seed})")

    with tempfile.TemporaryDirectory() as tmp:
        _, t_write = timed(write_predictions, tmp, pred)
        read, t_read = timed(read_predictions, tmp, gt)
    same_files = all(
        np.array_equal(read.predictions[ev][name], boxes) for ev, imgs in pred.items() for name, boxes in imgs.items()
    )
    say(f"submission files: write {t_write:.2f} s, strict read {t_read:.2f} s, round trip exact: {same_files}")

    times = []
    for _ in range(args.runs):
        result, t = timed(evaluate, read.predictions, gt)
        times.append(t)
    t_vec = statistics.median(times)
    say(f"vectorised evaluate (3 settings + 13 breakdown subsets): median {t_vec:.3f} s of {args.runs} runs")
    say(f"  runs: {', '.join(f'{t:.3f}' for t in times)} s")

    keeps = {s: [im.keep[s] for im in gt.images] for s in SETTINGS}
    oracle, t_oracle = timed(oracle_evaluate, read.predictions, gt, keeps)
    say(f"loop oracle (3 settings only): {t_oracle:.1f} s")
    say(f"speed-up: {t_oracle / t_vec:.0f}x")

    say()
    say(f"{'setting':<8}{'vectorised AP':>22}{'oracle AP':>22}{'|diff|':>10}")
    worst = 0.0
    for s in SETTINGS:
        ours, ref = result.settings[s].ap, oracle[s][0]
        worst = max(worst, abs(ours - ref))
        say(f"{s:<8}{ours:>22.17f}{ref:>22.17f}{abs(ours - ref):>10.1e}")
    ok = worst <= 1e-9 and same_files
    say(f"equal AP (|diff| <= 1e-9): {ok}")
    say()
    say(result.table())

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
