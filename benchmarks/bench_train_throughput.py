"""CPU training throughput (images/s) of the three compared models, and of the data loader alone.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_train_throughput --out benchmarks/results/train_throughput.txt

Model: one full training step as in ``train.trainer`` (forward, MultiBoxLoss with matching and
hard negative mining, backward, AdamW step) on real augmented batches of 8 images at 640x640,
taken from the DataLoader beforehand so that only the step is timed. Models are timed
interleaved (one step of each per round, rotating the order) so that load from other processes
on a shared machine hits every model alike; the median step gives images/s.

Loader: the training DataLoader (TrainTransform at 640 px: crop, photometric distortion, mirror,
resize; collate) iterated without any model, for 0 and 2 worker processes; steady-state rate
with the first batch of each pass (worker start-up) reported apart. When it delivers far more
images/s than a training step consumes, the loader is not the bottleneck.

``--threads 2 1`` times the models once per thread count: on a small machine shared with other
jobs, OpenMP threads waiting on each other can make 2 threads slower and much noisier than 1.

Data: a synthetic set in the WIDERFace layout generated into a temp folder (``--data`` to use
another dataset root).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from core.config import COMPARED_MODELS
from core.data.augment import TrainTransform
from core.data.dataset import WiderFaceDetection, detection_collate
from core.factory import build_model
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, input_dir, output_file
from core.losses import MultiBoxLoss
from core.synth.generate import generate_dataset

IMG_SIZE = 640
BATCH = 8


def make_loader(root: Path, workers: int, seed: int = 0) -> DataLoader:
    dataset = WiderFaceDetection(root, "train", TrainTransform(IMG_SIZE, rng=np.random.default_rng(seed)))
    return DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, collate_fn=detection_collate,
                      drop_last=True, generator=torch.Generator().manual_seed(seed))


def loader_throughput(root: Path, workers: int, epochs: int) -> tuple[float, float]:
    """(steady images/s, seconds to the first batch) of iterating the loader without a model.

    The first batch of each pass is left out of the rate: it carries the worker start-up, which
    training pays once per epoch (0.3 s or so, nothing against a WIDER epoch of 400 steps).
    """
    loader = make_loader(root, workers)
    images, steady, first = 0, 0.0, []
    for _ in range(epochs):
        start = time.perf_counter()
        for i, (batch, _targets) in enumerate(loader):
            now = time.perf_counter()
            if i == 0:
                first.append(now - start)
            else:
                images += batch.shape[0]
                steady += now - start
            start = time.perf_counter()
    return images / steady, float(np.median(first))


class StepRunner:
    """One model with its optimiser and loss: ``step(batch)`` is a training step, as in the trainer."""

    def __init__(self, name: str) -> None:
        torch.manual_seed(0)
        self.model = build_model(name).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=5e-4)
        self.criterion = MultiBoxLoss(self.model.cfg.anchors.variances)
        self.anchors = self.model.anchors_for((IMG_SIZE, IMG_SIZE), torch.device("cpu"))

    def step(self, images: torch.Tensor, targets: list[torch.Tensor]) -> float:
        start = time.perf_counter()
        terms = self.criterion(self.model(images), self.anchors, targets)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def model_throughput(root: Path, rounds: int, warmup: int) -> dict[str, np.ndarray]:
    """Seconds per step for each compared model, interleaved rounds with a rotating order."""
    batches = []
    for batch in make_loader(root, workers=0):
        batches.append(batch)
        if len(batches) == rounds + warmup:
            break
    runners = {name: StepRunner(name) for name in COMPARED_MODELS}
    names = list(runners)
    for i in range(warmup):
        for name in names:
            runners[name].step(*batches[i])
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(runners[name].step(*batches[(warmup + r) % len(batches)]))
    return {n: np.array(t) for n, t in times.items()}


def report(root: Path, data_label: str, threads: list[int], rounds: int, warmup: int, loader_epochs: int) -> str:
    load_before = os.getloadavg()
    step_times = {}
    for n in threads:
        torch.set_num_threads(n)
        step_times[n] = model_throughput(root, rounds, warmup)
    loader = {w: loader_throughput(root, w, loader_epochs) for w in (0, 2)}
    load_after = os.getloadavg()
    num_images = len(WiderFaceDetection(root, "train"))
    lines = [
        f"Training throughput, CPU, {IMG_SIZE}x{IMG_SIZE}, batch {BATCH}, float32, AdamW; "
        f"{rounds} timed steps per model after {warmup} warm-up (interleaved, rotating order)",
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        f"data: {data_label} ({num_images} train images)",
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(shared machine: compare models within one table only)",
    ]
    for n, times in step_times.items():
        lines += ["", f"torch threads: {n}", f"{'model':<20}{'median s/step':>15}{'min s/step':>12}{'images/s':>10}"]
        lines += [f"{name:<20}{np.median(t):>15.3f}{t.min():>12.3f}{BATCH / np.median(t):>10.2f}"
                  for name, t in times.items()]
    fastest = max(BATCH / np.median(t) for times in step_times.values() for t in times.values())
    lines += ["", "data loader alone (TrainTransform at 640 + collate, no model), steady state:",
              f"{'workers':<10}{'images/s':>10}{'first batch s':>15}"]
    lines += [f"{w:<10}{ips:>10.1f}{first:>15.2f}" for w, (ips, first) in loader.items()]
    margin = min(ips for ips, _ in loader.values()) / fastest
    verdict = ("the loader is not the bottleneck on CPU" if margin > 2
               else "the loader could limit training: raise --workers")
    lines += ["", f"the slower loader setting delivers {margin:.0f}x the images/s of the fastest training step: "
              f"{verdict}"]
    return "\n".join(lines) + "\n"


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_train_throughput", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=input_dir, default=None, help="dataset root (default: a temp synthetic set)")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic train images (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model (default 2)")
    parser.add_argument("--loader-epochs", type=int, default=2, help="passes over the data per loader timing")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch intra-op thread counts to time the models with (default: torch's default)")
    parser.add_argument("--out", type=output_file, default=None, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    threads = args.threads or [torch.get_num_threads()]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or generate_dataset(Path(tmp) / "synth", num_train=args.num_images, num_val=0, seed=0)
        label = str(args.data) if args.data else "synthetic set, core.synth.generate seed 0, sides 256-640 px"
        text = report(root, label, threads, args.rounds, args.warmup, args.loader_epochs)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
