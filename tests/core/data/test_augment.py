"""Training augmentation keeps image and labels in step.

The strongest check is visual: coloured dots are painted at every landmark and box corner, the
image goes through the real pipeline, and the pixels at the transformed coordinates must still
show the right colours (with left/right colours swapped exactly when the sample was mirrored).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.data.augment import (
    PRE_SCALES,
    EvalTransform,
    TrainTransform,
    hflip,
    photometric_distort,
    random_crop,
)

DIM = 640
BACKGROUND = (90, 90, 90)
# BGR colours of the five landmarks: left eye, right eye, nose, mouth left, mouth right.
LANDMARK_COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)]
MIRRORED_COLOURS = [LANDMARK_COLOURS[i] for i in (1, 0, 2, 4, 3)]
# Box corners: top-left, top-right, bottom-left, bottom-right.
CORNER_COLOURS = [(255, 255, 0), (255, 255, 255), (0, 128, 255), (128, 0, 128)]
DOT_RADIUS = 6  # wide enough that even Lanczos (4 px support) leaves the dot centre exact


def face(x1: int, y1: int, x2: int, y2: int, points: list[tuple[int, int]] | None) -> list[float]:
    """A pixel target row; landmark dots are drawn at integer pixels, i.e. centre + 0.5."""
    coords = [-1.0] * 10 if points is None else [c + 0.5 for point in points for c in point]
    return [x1, y1, x2, y2, *coords, 1.0 if points else -1.0]


def scene() -> tuple[np.ndarray, np.ndarray]:
    """480x360 image, two faces with landmarks and one without, dots painted on all points."""
    targets = np.array(
        [
            face(40, 40, 160, 170, [(75, 85), (125, 85), (100, 110), (80, 140), (120, 140)]),
            face(260, 150, 380, 280, [(295, 195), (345, 195), (320, 220), (300, 250), (340, 250)]),
            face(400, 40, 460, 100, None),
        ],
        dtype=np.float32,
    )
    image = np.full((360, 480, 3), BACKGROUND, dtype=np.uint8)
    for row in targets:
        x1, y1, x2, y2 = (int(v) for v in row[:4])
        for (x, y), colour in zip([(x1, y1), (x2, y1), (x1, y2), (x2, y2)], CORNER_COLOURS, strict=True):
            cv2.circle(image, (x, y), DOT_RADIUS, colour, -1)
        if row[14] > 0:
            for (x, y), colour in zip(row[4:14].reshape(5, 2), LANDMARK_COLOURS, strict=True):
                cv2.circle(image, (int(x), int(y)), DOT_RADIUS, colour, -1)
    return image, targets


def to_bgr(chw: np.ndarray) -> np.ndarray:
    return np.clip(chw.transpose(1, 2, 0) + np.array([104, 117, 123], np.float32), 0, 255).round().astype(np.uint8)


def pixel(image: np.ndarray, u: float, v: float) -> tuple[int, ...]:
    x = min(int(u * image.shape[1]), image.shape[1] - 1)
    y = min(int(v * image.shape[0]), image.shape[0] - 1)
    return tuple(int(c) for c in image[y, x])


def close(actual: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return max(abs(a - e) for a, e in zip(actual, expected, strict=True)) <= 3


def inside(u: float, v: float) -> bool:
    """Strictly inside: a coordinate at exactly 0 or 1 was clipped to the crop edge."""
    return 0.0 < u < 1.0 and 0.0 < v < 1.0


@pytest.mark.parametrize("seed", range(40))
def test_dots_follow_their_labels(seed: int) -> None:
    image, targets = scene()
    transform = TrainTransform(DIM, rng=np.random.default_rng(seed), photometric=False)
    chw, out = transform(image, targets)
    assert chw.shape == (3, DIM, DIM) and chw.dtype == np.float32
    bgr = to_bgr(chw)
    assert len(out) >= 1

    for row in out:
        x1, y1, x2, y2 = row[:4]
        corners = [(x1, y1), (x2, y1), (x1, y2), (x2, y2)]
        seen = [pixel(bgr, u, v) for u, v in corners if inside(u, v)]
        assert all(any(close(s, c) for c in CORNER_COLOURS) for s in seen), seen

        if row[14] < 0:
            np.testing.assert_array_equal(row[4:14], -1.0)
            continue
        points = row[4:14].reshape(5, 2)
        checked = [(pixel(bgr, u, v), i) for i, (u, v) in enumerate(points) if inside(u, v)]
        plain = all(close(colour, LANDMARK_COLOURS[i]) for colour, i in checked)
        mirrored = all(close(colour, MIRRORED_COLOURS[i]) for colour, i in checked)
        assert plain or mirrored, f"landmark colours {checked} match neither orientation"
        assert points[0, 0] <= points[1, 0] and points[3, 0] <= points[4, 0], "left/right order lost"


@pytest.mark.parametrize("seed", range(40))
def test_targets_are_normalised_and_consistent(seed: int) -> None:
    image, targets = scene()
    _, out = TrainTransform(DIM, rng=np.random.default_rng(seed))(image, targets)
    assert out.dtype == np.float32 and out.shape[1] == 15
    boxes = out[:, :4]
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert set(np.unique(out[:, 14])) <= {-1.0, 1.0}
    with_points = out[out[:, 14] > 0]
    xs, ys = with_points[:, 4:14:2], with_points[:, 5:14:2]
    eps = 1e-6
    assert np.all((xs >= with_points[:, [0]] - eps) & (xs <= with_points[:, [2]] + eps))
    assert np.all((ys >= with_points[:, [1]] - eps) & (ys <= with_points[:, [3]] + eps))
    np.testing.assert_array_equal(out[out[:, 14] < 0, 4:14], -1.0)


def test_both_mirror_states_occur() -> None:
    """The dot test above is only meaningful if it saw flipped and unflipped samples."""
    image, targets = scene()
    states = set()
    for seed in range(40):
        chw, out = TrainTransform(DIM, rng=np.random.default_rng(seed), photometric=False)(image, targets)
        bgr = to_bgr(chw)
        for row in out[out[:, 14] > 0]:
            u, v = row[4:6]
            if inside(u, v):
                states.add(close(pixel(bgr, u, v), MIRRORED_COLOURS[0]))
    assert states == {False, True}


def test_same_seed_same_sample_and_different_seeds_differ() -> None:
    image, targets = scene()
    first = TrainTransform(DIM, rng=np.random.default_rng(7))(image, targets)
    again = TrainTransform(DIM, rng=np.random.default_rng(7))(image, targets)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [TrainTransform(DIM, rng=np.random.default_rng(s))(image, targets)[1] for s in range(8, 13)]
    assert any(o.shape != first[1].shape or not np.array_equal(o, first[1]) for o in others)

    transform = TrainTransform(DIM, rng=np.random.default_rng(0))
    transform.reseed(7)
    np.testing.assert_array_equal(transform(image, targets)[1], first[1])


def test_photometric_switch_changes_colours_not_geometry() -> None:
    image, targets = scene()
    changed = 0
    for seed in range(6):
        on = TrainTransform(DIM, rng=np.random.default_rng(seed), photometric=True)(image, targets)
        off = TrainTransform(DIM, rng=np.random.default_rng(seed), photometric=False)(image, targets)
        np.testing.assert_array_equal(on[1], off[1])
        changed += not np.array_equal(on[0], off[0])
    assert changed > 0


def test_mirror_is_the_only_difference_between_flip_and_no_flip() -> None:
    image, targets = scene()
    for seed in range(10):
        _, kept = TrainTransform(DIM, rng=np.random.default_rng(seed), mirror_prob=0.0)(image, targets)
        _, flipped = TrainTransform(DIM, rng=np.random.default_rng(seed), mirror_prob=1.0)(image, targets)
        np.testing.assert_allclose(flipped[:, 0], 1 - kept[:, 2], atol=1e-6)
        np.testing.assert_allclose(flipped[:, 2], 1 - kept[:, 0], atol=1e-6)
        np.testing.assert_allclose(flipped[:, [1, 3]], kept[:, [1, 3]])
        has = kept[:, 14] > 0
        kept_points = kept[has, 4:14].reshape(-1, 5, 2)
        flip_points = flipped[has, 4:14].reshape(-1, 5, 2)
        for new, old in enumerate((1, 0, 2, 4, 3)):
            np.testing.assert_allclose(flip_points[:, new, 0], 1 - kept_points[:, old, 0], atol=1e-6)
            np.testing.assert_allclose(flip_points[:, new, 1], kept_points[:, old, 1])


def test_hflip_swaps_eyes_and_mouth_corners() -> None:
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :5] = 255
    boxes = np.array([[2, 1, 8, 9], [0, 0, 20, 10]], np.float32)
    landmarks = np.array([[3, 2, 7, 2, 5, 5, 4, 8, 6, 8], [-1] * 10], np.float32)
    present = np.array([True, False])
    out_image, out_boxes, out_landmarks = hflip(image, boxes, landmarks, present)
    assert out_image[:, 15:].min() == 255 and out_image[:, :15].max() == 0
    np.testing.assert_array_equal(out_boxes, [[12, 1, 18, 9], [0, 0, 20, 10]])
    # left eye <- mirrored right eye (x 7 -> 13), right eye <- mirrored left eye (3 -> 17),
    # nose stays the nose, mouth corners swap the same way.
    np.testing.assert_array_equal(out_landmarks[0], [13, 2, 17, 2, 15, 5, 14, 8, 16, 8])
    np.testing.assert_array_equal(out_landmarks[1], -1.0)


def coordinate_image(height: int, width: int) -> np.ndarray:
    """Every pixel encodes its own (x, y), so a crop reveals where it was taken."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.dstack([xs % 256, ys % 256, (xs // 256) * 16 + ys // 256]).astype(np.uint8)


@pytest.mark.parametrize("seed", range(25))
def test_random_crop_keeps_faces_whose_centre_is_inside(seed: int) -> None:
    height, width = 300, 500
    image = coordinate_image(height, width)
    boxes = np.array([[10, 10, 50, 60], [100, 120, 140, 150], [200, 40, 290, 130], [380, 200, 495, 298]], np.float32)
    landmarks = np.tile(((boxes[:, :2] + boxes[:, 2:]) / 2), 5).astype(np.float32)
    landmarks[:, 0] = boxes[:, 0] + 1  # left eye near the left border, to see it clipped
    present = np.ones(4, bool)
    crop, out_boxes, out_landmarks, out_present, cropped = random_crop(
        image, boxes, landmarks, present, DIM, np.random.default_rng(seed)
    )
    assert cropped
    size = crop.shape[0]
    assert crop.shape[:2] == (size, size)
    assert any(size == int(s * height) for s in PRE_SCALES)
    b, g, r = (int(c) for c in crop[0, 0])
    left, top = b + (r // 16) * 256, g + (r % 16) * 256

    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    expect = np.all((centres > (left, top)) & (centres < (left + size, top + size)), axis=1)
    assert len(out_boxes) == expect.sum()
    shifted = boxes[expect] - np.array([left, top] * 2, np.float32)
    np.testing.assert_allclose(out_boxes, np.clip(shifted, 0, size))
    shifted_points = landmarks[expect] - np.array([left, top] * 5, np.float32)
    np.testing.assert_allclose(out_landmarks, np.clip(shifted_points, 0, size))
    assert out_present.all()
    wholly = np.all((boxes[:, :2] >= (left, top)) & (boxes[:, 2:] <= (left + size, top + size)), axis=1)
    assert wholly.any(), "an accepted crop must contain at least one whole face"


def test_failed_crop_pads_to_square_with_the_mean() -> None:
    # No square of the short side (240) can hold a 300-wide face, so every crop attempt fails.
    image = np.full((240, 320, 3), 200, np.uint8)
    targets = np.array([face(10, 20, 310, 220, [(100, 80), (200, 80), (150, 120), (110, 170), (190, 170)])], np.float32)
    chw, out = TrainTransform(DIM, rng=np.random.default_rng(3), photometric=False, mirror_prob=0.0)(image, targets)
    np.testing.assert_allclose(out[0, :4], np.array([10, 20, 310, 220]) / 320, rtol=1e-6)
    assert np.abs(chw[:, -20:, :]).max() == 0  # bottom strip is padding: mean colour -> 0
    np.testing.assert_allclose(chw[:, 100, 100], 200 - np.array([104, 117, 123]))


def test_faces_lying_outside_the_image_are_clipped_or_dropped() -> None:
    image = np.full((100, 100, 3), 50, np.uint8)
    targets = np.array([face(-10, 90, 30, 120, None), face(150, 10, 160, 20, None)], np.float32)
    _, out = EvalTransform(DIM)(image, targets)
    np.testing.assert_allclose(out[:, :4], [[0, 0.9, 0.3, 1.0]], rtol=1e-6)


def test_image_without_faces() -> None:
    image = np.full((50, 80, 3), 10, np.uint8)
    chw, out = TrainTransform(64, rng=np.random.default_rng(0))(image, np.zeros((0, 15), np.float32))
    assert chw.shape == (3, 64, 64) and out.shape == (0, 15)


def test_eval_transform_is_deterministic_resize_and_mean() -> None:
    image, targets = scene()
    chw, out = EvalTransform(DIM)(image, targets)
    again, _ = EvalTransform(DIM)(image, targets)
    np.testing.assert_array_equal(chw, again)
    assert chw.shape == (3, DIM, DIM) and chw.dtype == np.float32
    np.testing.assert_allclose(out[:, :4], targets[:, :4] / 480, rtol=1e-6)
    np.testing.assert_allclose(out[:2, 4:14], targets[:2, 4:14] / 480, rtol=1e-6)
    np.testing.assert_array_equal(out[2, 4:14], -1.0)
    np.testing.assert_array_equal(out[:, 14], targets[:, 14])
    assert np.abs(chw[:, -100:, :]).max() == 0  # 480x360 padded at the bottom to 480x480


def test_photometric_distort_keeps_shape_and_dtype() -> None:
    image, _ = scene()
    for seed in range(5):
        out = photometric_distort(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, scene()[0]), "input must not be modified in place"


# Known answers below come from running the reference ``_crop`` (biubug6/Pytorch_Retinaface,
# data/data_augment.py) on the same crafted boxes, with its scale draw pinned where noted.


def fixed_crop_transform(img_dim: int, seed: int, **kwargs) -> TrainTransform:
    return TrainTransform(img_dim, rng=np.random.default_rng(seed), photometric=False, mirror_prob=0.0, **kwargs)


def centre_landmarks(boxes: np.ndarray) -> np.ndarray:
    return np.tile((boxes[:, :2] + boxes[:, 2:]) / 2, 5).astype(np.float32)


def test_border_faces_are_judged_by_their_labelled_box() -> None:
    """Scale 1 on a square image crops the whole image: the reference keeps the inside face and
    the border face whose labelled centre is inside, and drops the one whose centre is outside
    (clipping it first would move that centre inside and keep it)."""
    boxes = np.array([[10, 10, 40, 40], [-30, 50, 20, 90], [-10, 10, 30, 40]], np.float32)
    targets = np.hstack([boxes, centre_landmarks(boxes), np.ones((3, 1), np.float32)])
    image = np.full((100, 100, 3), 80, np.uint8)
    _, out = fixed_crop_transform(100, 0, pre_scales=(1.0,))(image, targets)
    np.testing.assert_allclose(out[:, :4] * 100, [[10, 10, 40, 40], [0, 10, 30, 40]], atol=1e-4)
    np.testing.assert_allclose(out[:, 4:14] * 100, [[25] * 10, [10, 25] * 5], atol=1e-4)


def test_faces_crossing_the_image_border_never_make_a_crop_acceptable() -> None:
    """No crop can hold a border-crossing face wholly, so the reference never crops this image and
    keeps both faces; 200 samples keep all 400 faces."""
    boxes = np.array([[-20, 10, 40, 50], [70, 60, 130, 90]], np.float32)
    landmarks = centre_landmarks(boxes)
    image = np.full((100, 100, 3), 80, np.uint8)
    for seed in range(5):
        _, out_boxes, out_landmarks, _, cropped = random_crop(
            image, boxes, landmarks, np.ones(2, bool), DIM, np.random.default_rng(seed)
        )
        assert not cropped
        np.testing.assert_array_equal(out_boxes, boxes)  # the reference's answer, unclipped
        np.testing.assert_array_equal(out_landmarks, [[10, 30] * 5, [100, 75] * 5])

    targets = np.hstack([boxes, landmarks, np.ones((2, 1), np.float32)])
    kept = 0
    for seed in range(200):
        _, out = fixed_crop_transform(100, seed)(image, targets)
        # Deliberate deviation after a failed crop: boxes clipped to the image, targets in [0, 1].
        np.testing.assert_allclose(out[:, :4] * 100, [[0, 10, 40, 50], [70, 60, 100, 90]], atol=1e-4)
        kept += len(out)
    assert kept == 400


def test_crop_offset_is_drawn_below_the_last_position() -> None:
    """``randrange(width - size)``: a 100-px crop of a 103-px-wide image starts at 0, 1 or 2, never 3;
    when the crop spans the image the offset is 0."""
    boxes = np.array([[50, 20, 52, 30]], np.float32)
    landmarks = centre_landmarks(boxes)
    lefts, tops = set(), set()
    image = coordinate_image(100, 103)
    for seed in range(200):
        crop, *_, cropped = random_crop(
            image, boxes, landmarks, np.ones(1, bool), DIM, np.random.default_rng(seed), pre_scales=(1.0,)
        )
        assert cropped and crop.shape[:2] == (100, 100)
        b, g, r = (int(c) for c in crop[0, 0])
        lefts.add(b + (r // 16) * 256)
        tops.add(g + (r % 16) * 256)
    assert lefts == {0, 1, 2} and tops == {0}


def test_a_face_smaller_than_a_pixel_cannot_make_a_crop_acceptable() -> None:
    """The reference's ``matrix_iof`` divides by ``max(area, 1)``: a 0.5 x 0.5 face alone never
    accepts a crop, but is kept (centre inside) once a real face accepts one."""
    image = np.full((100, 100, 3), 80, np.uint8)
    tiny = np.array([[10, 10, 10.5, 10.5]], np.float32)
    *_, cropped = random_crop(image, tiny, centre_landmarks(tiny), np.ones(1, bool), DIM,
                              np.random.default_rng(0), pre_scales=(1.0,))  # fmt: skip
    assert not cropped
    both = np.array([[10, 10, 10.5, 10.5], [20, 20, 60, 60]], np.float32)
    _, out_boxes, _, _, cropped = random_crop(
        image, both, centre_landmarks(both), np.ones(2, bool), DIM, np.random.default_rng(0), pre_scales=(1.0,)
    )
    assert cropped
    np.testing.assert_array_equal(out_boxes, both)
