"""core.boxes.postprocess.nms (+1 pixel rule on torchvision's kernel) vs a vectorised numpy greedy NMS and
the slow pure-python oracle of tests/core/boxes/test_nms.py; kept counts with and without the +1 rule.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_nms --out benchmarks/results/nms.txt

Boxes look like decoded detections before NMS: clusters of jittered boxes around face-sized
centres (8-200 px) in a 1024x768 image, float32, scores uniform. Timings are interleaved (one run of
each per round) medians on a shared CPU; the oracle runs once.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from core.boxes.postprocess import nms
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, output_file
from tests.core.boxes.test_nms import oracle_nms


def decoded_like_boxes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    faces = max(1, n // 20)
    size = np.exp(rng.uniform(np.log(8), np.log(200), faces))
    centre = rng.uniform([0, 0], [1024, 768], size=(faces, 2))
    pick = rng.integers(0, faces, n)
    s = size[pick] * rng.uniform(0.7, 1.3, n)
    c = centre[pick] + rng.normal(0, 0.15, (n, 2)) * s[:, None]
    boxes = np.concatenate([c - s[:, None] / 2, c + s[:, None] / 2], axis=1).astype(np.float32)
    return boxes, rng.uniform(0.02, 1, n).astype(np.float32)


def numpy_greedy(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """Vectorised-per-step greedy NMS with +1 areas, the way the reference's test script runs it."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= thresh]
    return keep


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_nms")
    parser.add_argument("--boxes", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=output_file, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    boxes, scores = decoded_like_boxes(args.boxes, seed=0)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    fns = {
        "core nms (+1, torchvision kernel)": lambda: nms(tb, ts, 0.4).tolist(),
        "numpy greedy (+1)": lambda: numpy_greedy(boxes, scores, 0.4),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    results = {k: fn() for k, fn in fns.items()}
    for r in range(args.runs):
        names = list(fns)[r % 2:] + list(fns)[:r % 2]
        for name in names:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    start = time.perf_counter()
    oracle = oracle_nms(boxes.astype(np.float64).tolist(), scores.astype(np.float64).tolist(), 0.4)
    oracle_s = time.perf_counter() - start

    lines = [
        "NMS benchmark: core.boxes.postprocess.nms vs numpy greedy vs pure-python oracle",
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU(s), 1 torch thread, "
        f"load {os.getloadavg()[0]:.2f}",
        f"{args.boxes} decoded-like float32 boxes (seed 0), IoU threshold 0.4, median of {args.runs} interleaved runs",
    ]
    for name, ts_ in times.items():
        lines.append(f"  {name:36s} {1000 * statistics.median(ts_):8.2f} ms   kept {len(results[name])}")
    lines.append(f"  {'pure-python oracle (+1, float64)':36s} {1000 * oracle_s:8.0f} ms   kept {len(oracle)} (1 run)")
    same = results["core nms (+1, torchvision kernel)"] == results["numpy greedy (+1)"]
    lines.append(f"core nms == numpy greedy (same indices, same order): {same}; == oracle: "
                 f"{results['core nms (+1, torchvision kernel)'] == oracle}")
    plain = nms(tb, ts, 0.4, pixel_inclusive=False)
    lines.append(f"kept with +1 areas: {len(results['numpy greedy (+1)'])}; torchvision rule (no +1): {len(plain)}")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
