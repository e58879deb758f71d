"""``python -m train.pretrain_backbone --data IMAGEFOLDER``: ImageNet-style pretraining of MobileNetV1-0.25.

For users who cannot find RetinaFace's `mobilenetV1X0.25_pretrain.tar`: trains the detector's body plus a
linear classifier on any folder in ImageNet layout (torchvision `ImageFolder`: `<data>/<class>/<image>`,
or `<data>/train/<class>/...` with an optional `<data>/val/<class>/...`) and writes exactly that file's
format (see `core.backbone_weights`): ``{"epoch", "arch", "state_dict" (keys "module.stage1..." and
"module.fc..."), "best_prec1"}``, so ``python -m train --backbone-weights OUT`` loads it.

Single process, or ``torchrun --nproc_per_node K -m train.pretrain_backbone ...`` (DDP as ``train``;
``--batch-size`` is the global batch). Inputs use the detector's own convention (BGR, 0-255, mean
104/117/123 subtracted), so the features transfer without a change of normalisation. Optimiser: SGD,
momentum 0.9, Nesterov, weight decay 4e-5, lr ``0.1 * batch / 256`` with cosine decay — a standard
MobileNet recipe, since RetinaFace does not publish how its file was trained. The output is rewritten
atomically after every epoch.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from core.backbone_weights import PREFIX
from core.checkpoint import atomic_torch_save
from core.config import get_config
from core.io.cli_paths import CliParser, error_line, fail, input_dir, output_file
from core.nets.backbone import MobileNetV1Classifier
from train import distributed

ARCH = "mobilenet0.25"
DEFAULT_OUT = Path("weights/mobilenetV1X0.25_pretrain.tar")
IMAGENET_MOMENTUM = 0.9  # the ImageNet recipe above (SGD, Nesterov), not a detection recipe's


class PretrainError(ValueError):
    """The image folder or the arguments cannot be used; the message says why."""


class DetectorInput:
    """PIL RGB image -> float tensor in the detector's convention (BGR, 0-255, per-channel mean removed)."""

    def __init__(self, bgr_mean: tuple[float, float, float]) -> None:
        self.mean = torch.tensor(bgr_mean, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: object) -> torch.Tensor:
        rgb = np.asarray(image, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))) - self.mean


def image_folders(data: Path) -> tuple[Path, Path | None]:
    """(train root, val root or None) for `<data>/<class>/...` or `<data>/train|val/<class>/...`."""
    data = Path(data)
    if not data.is_dir():
        raise PretrainError(f"--data {data}: not a folder")
    if (data / "train").is_dir():
        return data / "train", (data / "val") if (data / "val").is_dir() else None
    return data, None


def build_datasets(data: Path, img_size: int):
    from torchvision import datasets, transforms

    to_input = DetectorInput(get_config("none").bgr_mean)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(img_size), transforms.RandomHorizontalFlip(), to_input])
    val_tf = transforms.Compose([transforms.Resize(round(img_size * 256 / 224)), transforms.CenterCrop(img_size),
                                 to_input])
    train_root, val_root = image_folders(data)
    try:
        train_set = datasets.ImageFolder(str(train_root), transform=train_tf)
        val_set = datasets.ImageFolder(str(val_root), transform=val_tf) if val_root else None
    except (FileNotFoundError, RuntimeError) as exc:
        raise PretrainError(f"--data {data}: not an ImageNet-layout folder <class>/<image> "
                            f"({error_line(exc)})") from None
    if len(train_set.classes) < 2:
        raise PretrainError(f"{train_root}: {len(train_set.classes)} class folder(s); a classifier needs at least 2")
    if val_set is not None and val_set.classes != train_set.classes:
        raise PretrainError(f"{val_root}: class folders differ from {train_root}'s")
    return train_set, val_set


def reference_format(model: MobileNetV1Classifier, epoch: int, best_prec1: float) -> dict:
    """RetinaFace's pretrained-backbone dict: DataParallel `module.` keys, classifier included."""
    state = {PREFIX + k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"epoch": epoch, "arch": ARCH, "state_dict": state, "best_prec1": float(best_prec1)}


def accuracy(model: torch.nn.Module, loader: DataLoader, device: torch.device, ctx: distributed.DistContext) -> float:
    """Top-1 (%) over the loader, summed over ranks."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for images, labels in loader:
            logits = model(images.to(device))
            counts[0] += (logits.argmax(1).cpu() == labels).sum().item()
            counts[1] += labels.numel()
    if ctx.distributed:
        torch.distributed.all_reduce(counts)
    return float(100.0 * counts[0] / counts[1].clamp(min=1))


class _Classify(torch.nn.Module):
    """`forward` = classification logits, so DDP wraps the classifier path."""

    def __init__(self, net: MobileNetV1Classifier) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.classify(x)


def pretrain(args: argparse.Namespace) -> dict:
    ctx = distributed.setup(args.device)
    try:
        return _pretrain(args, ctx)
    finally:
        distributed.cleanup(ctx)


def _pretrain(args: argparse.Namespace, ctx: distributed.DistContext) -> dict:
    torch.manual_seed(args.seed)
    if args.batch_size % ctx.world_size:
        raise PretrainError(f"--batch-size {args.batch_size} (global) is not divisible by {ctx.world_size} processes")
    train_set, val_set = build_datasets(args.data, args.img_size)
    rank_batch = args.batch_size // ctx.world_size
    if len(train_set) < args.batch_size:
        raise PretrainError(f"{len(train_set)} images, fewer than --batch-size {args.batch_size}")
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    loader = DataLoader(train_set, batch_size=rank_batch, sampler=sampler, num_workers=args.workers, drop_last=True,
                        pin_memory=ctx.device.type == "cuda")
    val_loader = None
    if val_set is not None:
        val_sampler = DistributedSampler(val_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
        val_loader = DataLoader(val_set, batch_size=rank_batch, sampler=val_sampler, num_workers=args.workers)

    net = MobileNetV1Classifier(num_classes=len(train_set.classes)).to(ctx.device)
    model: torch.nn.Module = _Classify(net)
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    lr = args.lr if args.lr is not None else 0.1 * args.batch_size / 256
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=IMAGENET_MOMENTUM, nesterov=True,
                                weight_decay=args.weight_decay)
    total_steps = args.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))

    best, record = -1.0, {}
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        correct = seen = 0
        start = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="step", leave=False,
                   disable=not (ctx.is_main and args.progress))
        for images, labels in bar:
            images, labels = images.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise PretrainError(f"non-finite loss at epoch {epoch}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        train_top1 = 100.0 * correct / max(seen, 1)
        top1 = accuracy(model, val_loader, ctx.device, ctx) if val_loader is not None else train_top1
        best = max(best, top1)
        if ctx.is_main:
            record = reference_format(net, epoch, best)
            atomic_torch_save(record, args.out)
            what = "val" if val_loader is not None else "train"
            print(f"epoch {epoch}/{args.epochs}: {what} top-1 {top1:.2f}% (best {best:.2f}%), "
                  f"{time.perf_counter() - start:.1f} s -> {args.out}", file=sys.stderr, flush=True)
        distributed.barrier(ctx)
    return record


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="python -m train.pretrain_backbone",
                  description="Pretrain MobileNetV1-0.25 on an ImageNet-layout folder and write "
                              "RetinaFace's mobilenetV1X0.25_pretrain.tar format.")
    p.add_argument("--data", required=True, type=input_dir,
                   help="<data>/<class>/<image> or <data>/train|val/<class>/...")
    p.add_argument("--out", type=output_file, default=str(DEFAULT_OUT), help=f"output file (default {DEFAULT_OUT})")
    p.add_argument("--epochs", type=int, default=90, help="default 90")
    p.add_argument("--batch-size", type=int, default=256, help="GLOBAL batch (default 256)")
    p.add_argument("--lr", type=float, default=None, help="default 0.1 * batch / 256, cosine decay")
    p.add_argument("--weight-decay", type=float, default=4e-5, help="default 4e-5")
    p.add_argument("--img-size", type=int, default=224, help="crop size (default 224)")
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers per process (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.img_size < 8:
        print("error: --epochs and --batch-size must be >= 1 and --img-size >= 8", file=sys.stderr)
        return 2
    try:
        pretrain(args)
    except (PretrainError, RuntimeError) as exc:
        return fail(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
