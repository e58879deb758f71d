"""WIDERFace as a torch ``Dataset`` plus the RetinaFace batch collate.

Label problems (bad lines, missing images) are found once, up front, with the reader's
``on_error`` policy; problems only visible when an image is decoded (corrupt file, box lying
entirely outside the image) follow the same policy at load time. With ``"skip"`` every dropped
item is reported through ``warnings.warn`` naming the file -- never silently.

Worker safety: the dataset keeps no global random state. Inside a DataLoader worker it reseeds
the transform (if it has ``reseed``) from ``torch.initial_seed()``, which PyTorch makes distinct
per worker and per epoch, so workers never replay each other's augmentations. In the main
process the transform's own generator is left alone, keeping seeded runs reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from core.data.widerface import (
    ImageRecord,
    LabelFormatError,
    LabelIssue,
    OnError,
    check_images_exist,
    format_issues,
    read_labels,
)

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Split = Literal["train", "val"]


class UnreadableImageError(OSError):
    """An image listed in label.txt exists but OpenCV cannot decode it."""


class WiderFaceDetection(Dataset):
    """``<root>/<split>/label.txt`` + ``<root>/<split>/images``.

    ``dataset[i]`` is ``(image, targets)``: with a transform, the transform's output as tensors
    (CHW float32, (N, 15) float32 normalised); without one, the raw BGR uint8 HWC image and
    (N, 15) pixel targets as numpy arrays (for inspection and drawing). ``issues`` lists what
    was skipped while reading the labels.
    """

    def __init__(
        self,
        root: Path | str,
        split: Split = "train",
        transform: Transform | None = None,
        on_error: OnError = "fail",
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.on_error = on_error
        self.label_file = self.root / split / "label.txt"
        self.images_dir = self.root / split / "images"
        if not self.label_file.is_file():
            raise FileNotFoundError(
                f"{self.label_file} not found: expected the RetinaFace layout "
                f"<root>/{split}/label.txt with images under <root>/{split}/images/"
            )
        records, label_issues = read_labels(self.label_file, on_error)
        self.records, missing = check_images_exist(self.images_dir, records, self.label_file, on_error)
        self.issues: list[LabelIssue] = label_issues + missing
        if self.issues:
            warnings.warn(format_issues(self.issues), stacklevel=2)
        self._unreadable: set[int] = set()
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.records[index].path

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode image ``index`` (BGR uint8) and its pixel targets; raises on any problem."""
        record = self.records[index]
        path = self.image_path(index)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise UnreadableImageError(
                f"{self.label_file}:{record.line}: cannot decode image {path} (corrupt, truncated or not an image)"
            )
        return image, self._checked_targets(record, image)

    def _checked_targets(self, record: ImageRecord, image: np.ndarray) -> np.ndarray:
        """Pixel targets, without faces whose box lies wholly outside the image.

        Such a box means label and image do not match; it fails or is dropped with a warning.
        """
        targets = record.to_targets()
        height, width = image.shape[:2]
        boxes = targets[:, :4]
        outside = (boxes[:, 0] >= width) | (boxes[:, 1] >= height) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
        for line in record.face_lines[outside]:
            issue = LabelIssue(self.label_file, int(line), f"box lies outside the {width}x{height} image {record.path}")
            if self.on_error == "fail":
                raise LabelFormatError(issue)
            warnings.warn(f"{issue} (face skipped)", stacklevel=3)
        return targets[~outside]

    def _seed_worker(self) -> None:
        if get_worker_info() is None:
            return
        seed = torch.initial_seed()
        if seed != self._worker_seed:
            reseed = getattr(self.transform, "reseed", None)
            if reseed is not None:
                reseed(seed)
            self._worker_seed = seed

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[np.ndarray, np.ndarray]:
        self._seed_worker()
        image, targets = self._load_or_substitute(index)
        if self.transform is None:
            return image, targets
        image, targets = self.transform(image, targets)
        return torch.as_tensor(image), torch.as_tensor(targets)

    def _load_or_substitute(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``load(index)``; under ``"skip"`` an unreadable image is warned about once and the
        next readable one is used instead, so batches keep their size."""
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate in self._unreadable:
                continue
            try:
                return self.load(candidate)
            except UnreadableImageError as error:
                if self.on_error == "fail":
                    raise
                self._unreadable.add(candidate)
                warnings.warn(f"{error} (image skipped)", stacklevel=3)
        raise UnreadableImageError(f"no readable image left in {self.images_dir}")


def detection_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack images into (B, 3, H, W); keep targets as a list because face counts differ."""
    images = [torch.as_tensor(image) for image, _ in batch]
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(f"images in a batch must share one shape (use a resizing transform), got {sorted(shapes)}")
    targets = [torch.as_tensor(target, dtype=torch.float32).reshape(-1, 15) for _, target in batch]
    return torch.stack(images, 0), targets
