"""CPU training throughput (images/s) of the three compared models, and of the data loader alone.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_train_throughput --out benchmarks/results/train_throughput.txt

Model: one full training step as in ``train.trainer`` (forward, MultiBoxLoss with matching and
hard negative mining, backward, AdamW step) on real augmented batches of 8 images at 640x640,
taken from the DataLoader beforehand so that only the step is timed. Models are timed
interleaved (one step of each per round, rotating the order) so that load from other processes
on a shared machine hits every model alike; the median step gives images/s.

Loader: the training DataLoader (TrainTransform at 640 px: crop, photometric distortion, mirror,
resize; collate) iterated without any model, for 0 and 2 worker processes. When it delivers far
more images/s than a training step consumes, the loader is not the bottleneck.

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
from core.data.synth import generate_dataset
from core.factory import build_model
from core.losses import MultiBoxLoss

IMG_SIZE = 640
BATCH = 8


def make_loader(root: Path, workers: int, seed: int = 0) -> DataLoader:
    dataset = WiderFaceDetection(root, "train", TrainTransform(IMG_SIZE, rng=np.random.default_rng(seed)))
    return DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, collate_fn=detection_collate,
                      drop_last=True, generator=torch.Generator().manual_seed(seed))


def loader_throughput(root: Path, workers: int, epochs: int) -> float:
    """Images/s of iterating the loader (worker start-up included, as in training: one start per epoch)."""
    loader = make_loader(root, workers)
    images = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch, _targets in loader:
            images += batch.shape[0]
    return images / (time.perf_counter() - start)


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


def report(root: Path, data_label: str, rounds: int, warmup: int, loader_epochs: int) -> str:
    load_before = os.getloadavg()
    step_times = model_throughput(root, rounds, warmup)
    loader = {w: loader_throughput(root, w, loader_epochs) for w in (0, 2)}
    load_after = os.getloadavg()
    num_images = len(WiderFaceDetection(root, "train"))
    lines = [
        f"Training throughput, CPU, {IMG_SIZE}x{IMG_SIZE}, batch {BATCH}, float32, AdamW; "
        f"{rounds} timed steps per model after {warmup} warm-up (interleaved, rotating order)",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}",
        f"data: {data_label} ({num_images} train images); load average before/after: "
        f"{load_before[0]:.2f} / {load_after[0]:.2f} (shared machine: compare models within this file only)",
        "",
        f"{'model':<20}{'median s/step':>15}{'min s/step':>12}{'images/s':>10}",
    ]
    for name, t in step_times.items():
        lines.append(f"{name:<20}{np.median(t):>15.3f}{t.min():>12.3f}{BATCH / np.median(t):>10.2f}")
    slowest = max(BATCH / np.median(t) for t in step_times.values())
    lines += ["", "data loader alone (TrainTransform at 640 + collate, no model):",
              f"{'workers':<20}{'images/s':>15}"]
    lines += [f"{w:<20}{ips:>15.1f}" for w, ips in loader.items()]
    margin = loader[0] / slowest
    lines += ["", f"loader with 0 workers delivers {margin:.0f}x the images/s the fastest model step consumes: "
              "the loader is not the bottleneck on CPU" if margin > 2 else
              f"loader with 0 workers is only {margin:.1f}x the model step rate: use --workers >= 2"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: a temp synthetic set)")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic train images (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model (default 2)")
    parser.add_argument("--loader-epochs", type=int, default=2, help="passes over the data per loader timing")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or generate_dataset(Path(tmp) / "synth", num_train=args.num_images, num_val=0, seed=0)
        label = str(args.data) if args.data else "synthetic set, core.data.synth seed 0, sides 256-640 px"
        text = report(root, label, args.rounds, args.warmup, args.loader_epochs)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
