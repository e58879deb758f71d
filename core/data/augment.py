"""RetinaFace training augmentation (after ``data/data_augment.py`` of Pytorch_Retinaface).

Pipeline: random square crop -> photometric distortion -> pad to square (only when no crop was
found) -> random horizontal mirror -> resize to ``img_dim`` (random interpolation) -> subtract
the BGR mean -> CHW float32.

Targets in and out are RetinaFace's (N, 15) layout: ``x1 y1 x2 y2``, ten landmark coordinates
``x0 y0 .. x4 y4`` (left eye, right eye, nose, mouth left, mouth right) and a label that is 1.0
when the face has landmarks and -1.0 when not. Input is in pixels, output normalised to [0, 1]
by the (square) image size. Absent landmarks stay exactly -1 so they are never mistaken for a
point; the loss ignores them through the label anyway.

Randomness comes only from a ``numpy.random.Generator``: the same seed gives the same sample.
Geometry and colour draw from two independent child streams, so switching the photometric
distortion off does not change where faces end up (handy for ablations and for tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PRE_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)
RGB_MEAN = (104, 117, 123)  # BGR order, as the ImageNet-trained backbones expect
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4)
# Landmark order is (left eye, right eye, nose, mouth left, mouth right); a mirror swaps pairs.
MIRROR_ORDER = (1, 0, 2, 4, 3)


def _split_targets(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy (N, 15) pixel targets into float32 boxes (N, 4), landmarks (N, 10), present (N,)."""
    targets = np.asarray(targets, dtype=np.float32).reshape(-1, 15)
    return targets[:, :4].copy(), targets[:, 4:14].copy(), targets[:, 14] > 0


def _join_targets(boxes: np.ndarray, landmarks: np.ndarray, present: np.ndarray) -> np.ndarray:
    label = np.where(present, 1.0, -1.0).astype(np.float32)[:, None]
    return np.hstack([boxes, landmarks, label]).astype(np.float32)


def clip_to_image(
    boxes: np.ndarray, landmarks: np.ndarray, present: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip boxes and present landmarks to the image; drop faces with no area left.

    WIDER boxes often overrun the border by a pixel; clipping here keeps every normalised
    target inside [0, 1] even when the crop fails and the whole image is used.
    """
    limit = np.array([width, height] * 2, dtype=np.float32)
    boxes = np.clip(boxes, 0, limit)
    points = landmarks.reshape(-1, 5, 2).copy()
    points[present] = np.clip(points[present], 0, limit[:2])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], points.reshape(-1, 10)[keep], present[keep]


def random_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    present: np.ndarray,
    img_dim: int,
    rng: np.random.Generator,
    pre_scales: Sequence[float] = PRE_SCALES,
    attempts: int = 250,
    min_face: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Random square crop of ``scale * short side``; returns ``(..., cropped)``.

    Same decisions as the reference ``_crop``, on the boxes as labelled (not clipped to the
    image first, so a face crossing the image border can never make a crop acceptable):

    - the offset is drawn from ``[0, width - size)`` (0 when the crop spans the image), so the
      crop never starts exactly at ``width - size``;
    - a crop is accepted when at least one face lies wholly inside it with an area of at least
      one pixel (the reference's ``matrix_iof >= 1``);
    - faces whose centre lies strictly inside are kept, clipped to the crop, the rest dropped;
    - ``min_face`` is the smallest side, with the reference's +1 pixel convention and in pixels
      at ``img_dim``, a kept face may have: the reference uses 0, i.e. it drops nothing here.

    When no crop is found in ``attempts`` tries the input comes back unchanged with
    ``cropped=False`` and the caller pads to square instead.
    """
    height, width = image.shape[:2]
    short_side = min(width, height)
    if len(boxes) == 0:
        return image, boxes, landmarks, present, False
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    extent = boxes[:, 2:] - boxes[:, :2]
    countable = np.all(extent > 0, axis=1) & (extent[:, 0] * extent[:, 1] >= 1)
    for _ in range(attempts):
        size = int(rng.choice(pre_scales) * short_side)
        if size < 1:
            continue
        left = 0 if width == size else int(rng.integers(0, width - size))
        top = 0 if height == size else int(rng.integers(0, height - size))
        origin = np.array([left, top], dtype=np.float32)
        corner = origin + size

        wholly_inside = countable & np.all((boxes[:, :2] >= origin) & (boxes[:, 2:] <= corner), axis=1)
        if not wholly_inside.any():
            continue
        keep = np.all((centres > origin) & (centres < corner), axis=1)

        crop_boxes = boxes[keep].copy()
        crop_boxes[:, :2] = np.maximum(crop_boxes[:, :2], origin) - origin
        crop_boxes[:, 2:] = np.minimum(crop_boxes[:, 2:], corner) - origin
        crop_present = present[keep]
        points = landmarks[keep].reshape(-1, 5, 2).copy()
        points[crop_present] = np.clip(points[crop_present] - origin, 0, size)

        sides = np.minimum(crop_boxes[:, 2] - crop_boxes[:, 0], crop_boxes[:, 3] - crop_boxes[:, 1]) + 1
        big_enough = sides / size * img_dim > min_face
        if not big_enough.any():
            continue
        crop_image = image[top : top + size, left : left + size]
        return (
            crop_image,
            crop_boxes[big_enough],
            points.reshape(-1, 10)[big_enough],
            crop_present[big_enough],
            True,
        )
    return image, boxes, landmarks, present, False


def _affine(channel: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # Truncate like the reference's float -> uint8 assignment, after clipping to [0, 255].
    return np.clip(channel.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter, each applied with probability 1/2.

    As in the reference, contrast goes either before the HSV steps or after them, chosen at
    random, so the network does not learn a fixed colour pipeline.
    """
    image = image.copy()
    contrast_first = rng.random() < 0.5

    if rng.random() < 0.5:
        image = _affine(image, beta=rng.uniform(-32, 32))
    if contrast_first and rng.random() < 0.5:
        image = _affine(image, alpha=rng.uniform(0.5, 1.5))

    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    if rng.random() < 0.5:
        hsv[:, :, 1] = _affine(hsv[:, :, 1], alpha=rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        shift = int(rng.integers(-18, 19))  # OpenCV 8-bit hue lives in [0, 180)
        hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int32) + shift) % 180).astype(np.uint8)
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    if not contrast_first and rng.random() < 0.5:
        image = _affine(image, alpha=rng.uniform(0.5, 1.5))
    return image


def pad_to_square(image: np.ndarray, fill: Sequence[float]) -> np.ndarray:
    """Place the image top-left on a square canvas of its long side, filled with ``fill``.

    Top-left placement leaves pixel coordinates unchanged, so targets need no shift.
    """
    height, width = image.shape[:2]
    side = max(height, width)
    canvas = np.empty((side, side, 3), dtype=image.dtype)
    canvas[:, :] = np.asarray(fill, dtype=np.float64).astype(image.dtype)
    canvas[:height, :width] = image
    return canvas


def hflip(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror left-right: x -> width - x, and swap eyes and mouth corners.

    Without the swap the "left eye" regression target would sit on the right eye after the
    flip. Absent landmarks (-1) are left alone.
    """
    width = image.shape[1]
    image = np.ascontiguousarray(image[:, ::-1])
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    points = landmarks.reshape(-1, 5, 2).copy()
    points[present, :, 0] = width - points[present, :, 0]
    points = points[:, MIRROR_ORDER, :]
    return image, flipped, points.reshape(-1, 10)


def to_network_input(image: np.ndarray, img_dim: int, mean: Sequence[float], interpolation: int) -> np.ndarray:
    """Resize to ``img_dim`` square, subtract the BGR mean, HWC -> CHW float32."""
    resized = cv2.resize(image, (img_dim, img_dim), interpolation=interpolation)
    chw = (resized.astype(np.float32) - np.asarray(mean, dtype=np.float32)).transpose(2, 0, 1)
    return np.ascontiguousarray(chw)


def normalise_targets(
    boxes: np.ndarray, landmarks: np.ndarray, present: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Pixels -> [0, 1] (N, 15) targets; absent landmarks keep their -1 sentinel."""
    scale = np.array([width, height] * 2, dtype=np.float32)
    boxes = boxes / scale
    points = landmarks.reshape(-1, 5, 2).copy()
    points[present] = points[present] / scale[:2]
    points[~present] = -1.0
    return _join_targets(boxes, points.reshape(-1, 10), present)


class TrainTransform:
    """RetinaFace training augmentation: ``(bgr_uint8_hwc, targets_px) -> (chw_float32, targets)``.

    ``targets`` is (N, 15) in pixels as produced by ``ImageRecord.to_targets()``; the output
    targets are normalised. Deterministic for a seeded ``rng``; ``reseed`` lets a DataLoader
    worker give itself its own stream.
    """

    def __init__(
        self,
        img_dim: int = 640,
        rgb_mean: Sequence[float] = RGB_MEAN,
        rng: np.random.Generator | None = None,
        *,
        pre_scales: Sequence[float] = PRE_SCALES,
        crop_attempts: int = 250,
        min_face: float = 0.0,
        photometric: bool = True,
        mirror_prob: float = 0.5,
    ) -> None:
        self.img_dim = int(img_dim)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)
        self.pre_scales = tuple(pre_scales)
        self.crop_attempts = crop_attempts
        self.min_face = min_face
        self.photometric = photometric
        self.mirror_prob = mirror_prob
        self._set_rng(rng if rng is not None else np.random.default_rng())

    def _set_rng(self, rng: np.random.Generator) -> None:
        self._geometry_rng, self._colour_rng = rng.spawn(2)

    def reseed(self, seed: int) -> None:
        """Restart the random streams from ``seed`` (e.g. ``torch.initial_seed()`` in a worker)."""
        self._set_rng(np.random.default_rng(seed))

    def __call__(self, image: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = self._geometry_rng
        image, boxes, landmarks, present, cropped = random_crop(
            image, *_split_targets(targets), self.img_dim, rng,
            self.pre_scales, self.crop_attempts, self.min_face,
        )  # fmt: skip
        if not cropped:
            # Deliberate deviation: the reference keeps these boxes as labelled, past the border.
            boxes, landmarks, present = clip_to_image(boxes, landmarks, present, image.shape[1], image.shape[0])
        if self.photometric:
            image = photometric_distort(image, self._colour_rng)
        if not cropped:
            image = pad_to_square(image, self.rgb_mean)
        if rng.random() < self.mirror_prob:
            image, boxes, landmarks = hflip(image, boxes, landmarks, present)
        interpolation = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]

        side = image.shape[0]
        return (
            to_network_input(image, self.img_dim, self.rgb_mean, interpolation),
            normalise_targets(boxes, landmarks, present, side, side),
        )


class EvalTransform:
    """Deterministic counterpart for validation loss: pad to square with the mean, resize, subtract.

    Padding (not stretching) keeps face aspect ratios as in training, where crops are square.
    """

    def __init__(self, img_dim: int = 640, rgb_mean: Sequence[float] = RGB_MEAN) -> None:
        self.img_dim = int(img_dim)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)

    def __call__(self, image: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        boxes, landmarks, present = clip_to_image(*_split_targets(targets), width, height)
        image = pad_to_square(image, self.rgb_mean)
        side = image.shape[0]
        return (
            to_network_input(image, self.img_dim, self.rgb_mean, cv2.INTER_LINEAR),
            normalise_targets(boxes, landmarks, present, side, side),
        )
