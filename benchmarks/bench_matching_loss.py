"""Matching + MultiBoxLoss per training step: the former per-image path against the batched one (CPU).

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_matching_loss --out benchmarks/results/matching_loss.txt

One "step" is what the trainer does around the model: match the batch's faces to the 16,800
anchors of a 640x640 input, compute the loss terms (hard negative mining included) and back-
propagate them into the head outputs. Head outputs are random tensors (the model is not run),
targets are real augmented batches (TrainTransform at 640) of a synthetic set. Old = the
per-image code kept in ``tests/core/loss_oracle.py``, new = ``core.losses.MultiBoxLoss``; both run on
the same batch in each round, in alternating order, so machine load hits them alike. The
per-round ratio old/new gives the verdict with its spread.

On CUDA the gain should be larger than on CPU (the old path waits for the GPU about twice per
image, the new one never); no GPU was available when the recorded result was made.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.boxes.anchors import generate_anchors
from core.data.augment import TrainTransform
from core.data.dataset import WiderFaceDetection, detection_collate
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, input_dir, output_file
from core.losses import MultiBoxLoss
from core.synth.generate import generate_dataset
from tests.core.loss_oracle import multibox_loss_per_image

IMG_SIZE = 640
BATCH = 32


def target_batches(root: Path, count: int, seed: int = 0) -> list[list[torch.Tensor]]:
    """``count`` batches of BATCH augmented target lists (images are not needed)."""
    dataset = WiderFaceDetection(root, "train", TrainTransform(IMG_SIZE, rng=np.random.default_rng(seed)))
    order = np.random.default_rng(seed).permutation(np.arange(count * BATCH) % len(dataset))
    return [detection_collate([dataset[int(i)] for i in order[b * BATCH:(b + 1) * BATCH]])[1] for b in range(count)]


def time_step(fn: Callable, anchors: torch.Tensor, targets: list[torch.Tensor], seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    preds = tuple(torch.randn(BATCH, anchors.shape[0], k, generator=gen, requires_grad=True) for k in (4, 2, 10))
    start = time.perf_counter()
    fn(preds, anchors, targets).total.backward()
    return time.perf_counter() - start


def report(root: Path, data_label: str, rounds: int, warmup: int, threads: int) -> str:
    torch.set_num_threads(threads)
    anchors = generate_anchors((IMG_SIZE, IMG_SIZE))
    batches = target_batches(root, rounds + warmup)
    new = MultiBoxLoss()
    paths = {"per-image (old)": multibox_loss_per_image, "batched (new)": new}
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for r, targets in enumerate(batches):
        order = list(paths) if r % 2 == 0 else list(paths)[::-1]
        for name in order:
            seconds = time_step(paths[name], anchors, targets, seed=r)
            if r >= warmup:
                times[name].append(seconds)
    load_after = os.getloadavg()
    old_t, new_t = (np.array(t) for t in times.values())
    ratio = old_t / new_t
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratio, size=(2000, ratio.size)), axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    faces = [sum(len(t) for t in b) / BATCH for b in batches]
    lines = [
        f"Matching + MultiBoxLoss (forward + backward into the head outputs) per training step, CPU, "
        f"batch {BATCH}, {IMG_SIZE}x{IMG_SIZE} ({anchors.shape[0]:,} anchors), float32",
        f"{rounds} timed rounds after {warmup} warm-up, old and new on the same batch each round, alternating order",
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"torch threads {threads}",
        f"data: {data_label}; {np.mean(faces):.1f} faces per image on average after augmentation",
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (shared machine)",
        "",
        f"{'path':<20}{'median ms':>11}{'min ms':>9}{'max ms':>9}",
    ]
    lines += [f"{name:<20}{1e3 * np.median(t):>11.1f}{1e3 * t.min():>9.1f}{1e3 * t.max():>9.1f}"
              for name, t in zip(times, (old_t, new_t), strict=True)]
    lines += ["", f"old/new per round: median {np.median(ratio):.2f}x (95% bootstrap CI of the median "
              f"{lo:.2f}-{hi:.2f}x; rounds range {ratio.min():.2f}-{ratio.max():.2f}x)"]
    med = np.median(ratio)
    if lo > 1:
        verdict = f"batched is faster, by {med - 1:.0%} (CI {lo - 1:.0%} to {hi - 1:.0%})"
    elif hi < 1:
        verdict = f"batched is slower, by {1 - med:.0%} (CI {1 - hi:.0%} to {1 - lo:.0%})"
    else:
        verdict = "no difference shown (the CI of the ratio contains 1)"
    lines += [f"verdict on CPU: {verdict}.",
              "GPU: not measured (no GPU lent); there the old path also waits for the device about twice per image,",
              "the new one never (tests/core/test_losses.py::test_loss_needs_no_host_sync)."]
    return "\n".join(lines) + "\n"


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_matching_loss", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=input_dir, default=None, help="dataset root (default: a temp synthetic set)")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic train images (default 64)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=output_file, default=None, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or generate_dataset(Path(tmp) / "synth", num_train=args.num_images, num_val=0, seed=0)
        label = str(args.data) if args.data else "synthetic set, core.synth.generate seed 0 (not WIDERFace)"
        text = report(root, label, args.rounds, args.warmup, args.threads)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
