"""WiderFaceDetection + detection_collate on a tiny on-disk WIDERFace tree."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core.data.augment import EvalTransform, TrainTransform
from core.data.dataset import UnreadableImageError, WiderFaceDetection, detection_collate
from core.data.widerface import LabelFormatError

FACE20 = "10 12 30 34 15 20 0.0 25 20 0.0 20 25 0.0 16 30 0.0 24 30 0.0 0.5"
NO_LMK20 = "50 40 20 20 " + " ".join(["-1.0"] * 16)


def make_tree(root: Path, split: str, entries: dict[str, list[str]], size: tuple[int, int] = (80, 100)) -> Path:
    """Write the same random image for every entry, and a label.txt listing their faces."""
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    lines: list[str] = []
    for name, faces in entries.items():
        image_path = root / split / "images" / name
        image_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), image)
        lines.append(f"# {name}")
        lines.extend(faces)
    (root / split / "label.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path,
        "train",
        {"0--Parade/a.jpg": [FACE20, NO_LMK20], "0--Parade/b.jpg": [FACE20], "1--Handshaking/c.jpg": [NO_LMK20]},
    )


def test_items_and_collate_shapes(root: Path) -> None:
    dataset = WiderFaceDetection(root, "train", TrainTransform(64, rng=np.random.default_rng(0)))
    assert len(dataset) == 3 and dataset.issues == []
    image, targets = dataset[0]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert isinstance(targets, torch.Tensor) and targets.dtype == torch.float32 and targets.shape[1] == 15

    loader = DataLoader(dataset, batch_size=3, collate_fn=detection_collate)
    images, batch_targets = next(iter(loader))
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert isinstance(batch_targets, list) and len(batch_targets) == 3
    assert all(t.ndim == 2 and t.shape[1] == 15 and t.dtype == torch.float32 for t in batch_targets)


def test_raw_items_without_transform(root: Path) -> None:
    dataset = WiderFaceDetection(root, "train")
    image, targets = dataset[0]
    assert image.dtype == np.uint8 and image.shape == (80, 100, 3)  # BGR HWC, as cv2 reads it
    np.testing.assert_allclose(targets[:, :4], [[10, 12, 40, 46], [50, 40, 70, 60]])
    np.testing.assert_array_equal(targets[:, 14], [1.0, -1.0])
    assert dataset.image_path(2) == root / "train" / "images" / "1--Handshaking" / "c.jpg"


def test_val_split_with_box_only_labels(tmp_path: Path) -> None:
    make_tree(tmp_path, "val", {"0--Parade/v.jpg": ["5 6 20 30", "40 10 15 15"]})
    dataset = WiderFaceDetection(tmp_path, "val", EvalTransform(32))
    image, targets = dataset[0]
    assert image.shape == (3, 32, 32)
    np.testing.assert_allclose(targets[:, :4], np.array([[5, 6, 25, 36], [40, 10, 55, 25]]) / 100, rtol=1e-6)
    np.testing.assert_array_equal(targets[:, 4:], -1.0)


def test_missing_label_file_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="label.txt"):
        WiderFaceDetection(tmp_path, "val")
    with pytest.raises(ValueError, match="split"):
        WiderFaceDetection(tmp_path, "test")  # type: ignore[arg-type]


def test_missing_image_fails_or_is_skipped_with_a_counted_warning(root: Path) -> None:
    (root / "train" / "images" / "0--Parade" / "b.jpg").unlink()
    label = root / "train" / "label.txt"
    with pytest.raises(LabelFormatError, match=rf"^{re.escape(str(label))}:4: image not found: .*b\.jpg"):
        WiderFaceDetection(root, "train")
    with pytest.warns(UserWarning, match=r"1 label issue\(s\) skipped"):
        dataset = WiderFaceDetection(root, "train", on_error="skip")
    assert len(dataset) == 2 and [i.line for i in dataset.issues] == [4]


def test_bad_label_line_is_skipped_and_reported(root: Path) -> None:
    label = root / "train" / "label.txt"
    label.write_text(label.read_text().replace(NO_LMK20, "50 40 x 20", 1))
    with pytest.raises(LabelFormatError, match=rf"^{re.escape(str(label))}:3: not a number"):
        WiderFaceDetection(root, "train")
    with pytest.warns(UserWarning, match=rf"{re.escape(str(label))}:3: not a number"):
        dataset = WiderFaceDetection(root, "train", on_error="skip")
    assert len(dataset[0][1]) == 1


def test_corrupt_image(root: Path) -> None:
    (root / "train" / "images" / "0--Parade" / "b.jpg").write_bytes(b"not a jpeg at all")
    strict = WiderFaceDetection(root, "train", EvalTransform(32))
    with pytest.raises(UnreadableImageError, match=r"label\.txt:4: cannot decode image .*b\.jpg"):
        strict[1]

    lenient = WiderFaceDetection(root, "train", EvalTransform(32), on_error="skip")
    with pytest.warns(UserWarning, match=r"b\.jpg .*image skipped"):
        image, targets = lenient[1]
    np.testing.assert_array_equal(targets.numpy(), lenient[2][1].numpy())  # the next image stands in
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lenient[1]  # known bad now: substituted again without a second warning


def test_box_outside_the_image(tmp_path: Path) -> None:
    make_tree(tmp_path, "train", {"e/a.jpg": [FACE20, "150 10 20 20"]})
    label = tmp_path / "train" / "label.txt"
    with pytest.raises(LabelFormatError, match=rf"^{re.escape(str(label))}:3: box lies outside the 100x80 image"):
        WiderFaceDetection(tmp_path, "train")[0]
    dataset = WiderFaceDetection(tmp_path, "train", on_error="skip")
    with pytest.warns(UserWarning, match="face skipped"):
        _, targets = dataset[0]
    assert len(targets) == 1


def test_collate_rejects_mixed_sizes() -> None:
    batch = [(torch.zeros(3, 8, 8), torch.zeros(0, 15)), (torch.zeros(3, 8, 9), torch.zeros(1, 15))]
    with pytest.raises(ValueError, match="share one shape"):
        detection_collate(batch)
    images, targets = detection_collate([(np.zeros((3, 8, 8), np.float32), np.zeros((0, 15), np.float32))])
    assert images.shape == (1, 3, 8, 8) and targets[0].shape == (0, 15)


def test_workers_get_independent_reproducible_streams(tmp_path: Path) -> None:
    """Identical images in two workers must not receive identical augmentations."""
    make_tree(tmp_path, "train", {f"e/{i}.jpg": [FACE20, NO_LMK20] for i in range(4)})

    def run() -> list[torch.Tensor]:
        dataset = WiderFaceDetection(tmp_path, "train", TrainTransform(32, rng=np.random.default_rng(0)))
        generator = torch.Generator().manual_seed(1234)
        loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=detection_collate, generator=generator)
        return [images[0] for images, _ in loader]

    first = run()
    # batch 0 comes from worker 0 and batch 1 from worker 1; the images are identical on disk.
    assert not torch.equal(first[0], first[1])
    second = run()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
