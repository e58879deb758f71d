"""Validation during training: loss on ``val/label.txt`` and WIDER FACE AP (easy/medium/hard, percent).

The AP here is a progress signal, not the reported number: images are predicted with their long
side capped at ``max_side`` (default 640, about 0.6x of a typical WIDER image) so an evaluation
costs seconds on a GPU. Tiny faces suffer most, so the in-training "hard" AP is pessimistic; the
final numbers come from ``python -m eval.predict`` at the original size and ``eval.widerface.protocol``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from core.data.wider_gt import FACE_FILE, SETTINGS, load_wider_gt
from core.losses import MultiBoxLoss
from eval.widerface.predict import image_list_path, predict_split
from eval.widerface.protocol import evaluate


def gt_dir(data_root: Path) -> Path:
    return Path(data_root) / "ground_truth"


def ap_unavailable_reason(data_root: Path) -> str | None:
    """Why AP cannot be computed for this dataset (missing files), or None when it can."""
    needed = [image_list_path(data_root), gt_dir(data_root) / FACE_FILE]
    missing = [str(p) for p in needed if not p.is_file()]
    return f"missing {', '.join(missing)}" if missing else None


@contextmanager
def cudnn_autotune_off() -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` off inside, restored after.

    Training sets it for the fixed square input; the AP pass feeds images of many sizes one at a
    time, and with it on cuDNN would benchmark its kernels again for every new shape.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@torch.no_grad()
def val_losses(
    model: torch.nn.Module,
    loader: DataLoader,
    criterion: MultiBoxLoss,
    anchors: torch.Tensor,
    device: torch.device,
    amp: bool,
) -> torch.Tensor:
    """Mean (total, box, cls, landmark) over the val batches, model in eval mode (BN running stats)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)
    batches = 0
    try:
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                outputs = model(images)
            terms = criterion(outputs, anchors, targets)
            sums += torch.stack([t.detach() for t in terms]).double().cpu()
            batches += 1
    finally:
        model.train(was_training)
    return sums / max(batches, 1)


def val_ap(model: torch.nn.Module, data_root: Path, max_side: int | None) -> dict[str, float]:
    """{"easy", "medium", "hard"} AP in percent for the val list, predicted at ``max_side``."""
    predictions = predict_split(model, data_root, max_side=max_side)
    result = evaluate(predictions, load_wider_gt(gt_dir(data_root)))
    return {setting: 100.0 * result.ap[setting] for setting in SETTINGS}
