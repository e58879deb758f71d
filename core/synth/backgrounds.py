"""Backgrounds for the synthetic images: textured or two-tone scenes, clutter, and face-free patches pasted as hard
negatives."""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.synth.faces import _AA, _ONE, _SHIFT, _SKIN_RGB, Color, _axes, _bgr, _lfw, _pt, _texture, _thick, random_color


def _two_tone(gray: np.ndarray, c1: Color, c2: Color) -> np.ndarray:
    t = gray.astype(np.float32)[..., None] / 255.0
    return np.clip(np.float32(c2) * (1 - t) + np.float32(c1) * t, 0, 255).astype(np.uint8)


def make_background(rng: np.random.Generator, width: int, height: int, kind: str) -> np.ndarray:
    """A (height, width, 3) BGR background: ``texture:<brick|grass|gravel>``, gradient, noise or clutter."""
    c1, c2 = random_color(rng), random_color(rng)
    if kind.startswith("texture"):
        name = kind.split(":")[1] if ":" in kind else str(rng.choice(["brick", "grass", "gravel"]))
        tex = np.rot90(_texture(name), int(rng.integers(4)))
        size = int(rng.integers(128, tex.shape[0] + 1))
        ty, tx = rng.integers(0, tex.shape[0] - size + 1), rng.integers(0, tex.shape[1] - size + 1)
        crop = np.ascontiguousarray(tex[ty : ty + size, tx : tx + size])
        img = _two_tone(cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR), c1, c2)
    elif kind == "gradient":
        t = rng.uniform(0, 2 * math.pi)
        ramp = np.arange(width, dtype=np.float32)[None, :] * math.cos(t) + np.arange(height, dtype=np.float32)[
            :, None
        ] * math.sin(t)
        ramp = (ramp - ramp.min()) / max(1e-3, float(ramp.max() - ramp.min())) * 255
        img = _two_tone(ramp, c1, c2)
    elif kind == "noise":
        grid = rng.random((int(rng.integers(2, 10)), int(rng.integers(2, 10)), 3), dtype=np.float32)
        img = (cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
    else:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = np.uint8(c1)
        add_clutter(rng, img, int(rng.integers(15, 40)))
    return img


def add_clutter(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Random rectangles, discs, lines and polylines: edges and blobs that are not faces."""
    h, w = img.shape[:2]
    s = min(h, w)
    for _ in range(count):
        col = random_color(rng)
        kind = rng.integers(5)
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        size = float(rng.uniform(0.02, 0.35) * s)
        thick = -1 if rng.random() < 0.5 else _thick(rng.uniform(1, 6))
        if kind == 0:
            cv2.rectangle(
                img,
                _pt(x, y),
                _pt(x + size * rng.uniform(0.3, 2), y + size * rng.uniform(0.3, 2)),
                col,
                thick,
                _AA,
                _SHIFT,
            )
        elif kind == 1:
            cv2.circle(img, _pt(x, y), int(size / 2 * _ONE), col, thick, _AA, _SHIFT)
        elif kind == 2:
            t = rng.uniform(0, math.pi)
            cv2.line(
                img,
                _pt(x, y),
                _pt(x + 2 * size * math.cos(t), y + 2 * size * math.sin(t)),
                col,
                _thick(rng.uniform(1, 5)),
                _AA,
                _SHIFT,
            )
        elif kind == 3:
            pts = np.float32([x, y]) + rng.uniform(-size, size, (int(rng.integers(3, 7)), 2)).astype(np.float32)
            cv2.polylines(
                img,
                [np.round(pts * _ONE).astype(np.int32)],
                bool(rng.random() < 0.5),
                col,
                _thick(rng.uniform(1, 4)),
                _AA,
                _SHIFT,
            )
        else:
            cv2.ellipse(
                img,
                _pt(x, y),
                _axes(size / 2, size * rng.uniform(0.1, 0.5)),
                float(rng.uniform(0, 180)),
                0,
                360,
                col,
                thick,
                _AA,
                _SHIFT,
            )


def _overlaps(box: tuple[float, float, float, float], others: list[tuple[float, float, float, float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in others)


def paste_negatives(
    rng: np.random.Generator, img: np.ndarray, avoid: list[tuple[float, float, float, float]], count: int
) -> None:
    """Unlabelled hard negatives: LFW non-face crops and featureless skin-coloured blobs.

    ``avoid`` holds xyxy regions (the faces to be drawn later) that negatives must stay clear of.
    """
    h, w = img.shape[:2]
    crops = _lfw()[100:]
    for _ in range(count):
        size = float(rng.uniform(12, max(13.0, 0.3 * min(h, w))))
        aspect = float(rng.uniform(0.6, 1.6))
        bw, bh = size * aspect, size
        if bw >= w or bh >= h:
            continue
        x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
        if _overlaps((x, y, x + bw, y + bh), avoid):
            continue
        x0, y0, x1, y1 = int(x), int(y), int(x + bw), int(y + bh)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        if rng.random() < 0.7:
            crop = cv2.resize(crops[rng.integers(100)], (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
            patch = _two_tone(np.clip(crop * 255, 0, 255), random_color(rng, 60), random_color(rng, 0, 120))
            img[y0:y1, x0:x1] = patch
        else:  # a hand/arm-like skin blob with no facial features
            skin = _bgr(_SKIN_RGB[rng.integers(len(_SKIN_RGB))])
            r = min(x1 - x0, y1 - y0) / 2  # any rotation of this ellipse stays inside the box
            cv2.ellipse(
                img,
                _pt((x0 + x1) / 2, (y0 + y1) / 2),
                _axes(r, r * rng.uniform(0.3, 0.7)),
                float(rng.uniform(0, 180)),
                0,
                360,
                skin,
                -1,
                _AA,
                _SHIFT,
            )
