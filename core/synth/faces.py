"""Drawing primitives for the synthetic face dataset: faces, occluders, backgrounds, negatives.

Faces are painted with OpenCV rather than pasted from a photo set, because nothing can be
downloaded here and the generator must run anywhere the pinned packages install. To give a
detector trained on them some real-face signal, about half of the faces are modulated by one
of the 100 real 25x25 face crops in ``skimage.data.lfw_subset()`` (warped so its eyes and mouth
sit where the drawn ones are), and the 100 non-face crops of the same set are pasted as
unlabelled hard negatives.

Every attribute written to the ground truth (blur, occlusion, pose, illumination, expression,
invalid) is derived from how the face was actually drawn, e.g. occlusion is the measured
fraction of the face ellipse covered by sunglasses, masks, scarves or foreground objects.
All randomness comes from the ``numpy.random.Generator`` passed in, so a seed fixes the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import cv2
import numpy as np
from skimage import data as skdata

Color = tuple[float, float, float]  # BGR, 0..255

_SHIFT = 4  # cv2 sub-pixel bits: coordinates are passed as round(v * 16)
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

# Face geometry in units of the upright face box (u: 0 left .. 1 right, v: 0 top .. 1 chin).
EYE_V, EYE_DU = 0.42, 0.20
BROW_V = 0.335
NOSE_V = 0.61
MOUTH_V, MOUTH_DU = 0.785, 0.14

# Where the eyes and mouth centre sit in the 25x25 LFW crops (measured on their mean face).
_LFW_POINTS = np.float32([[6.5, 8.5], [15.0, 8.5], [10.75, 18.0]])

_SKIN_RGB = [
    (255, 224, 196),
    (247, 210, 180),
    (234, 192, 160),
    (224, 172, 130),
    (210, 160, 120),
    (198, 134, 90),
    (175, 115, 75),
    (141, 85, 55),
    (110, 70, 48),
    (85, 55, 40),
]
_HAIR_RGB = [
    (25, 20, 18),
    (45, 30, 20),
    (80, 55, 35),
    (120, 80, 45),
    (190, 150, 90),
    (225, 200, 140),
    (150, 60, 30),
    (130, 130, 130),
    (205, 205, 200),
    (60, 45, 40),
]
_EYE_RGB = [(70, 45, 30), (40, 30, 25), (60, 90, 130), (80, 110, 70), (110, 80, 50)]

OCCLUSION_PARTIAL = 0.03  # WIDER FACE: partial occlusion is 1-30 % of the face, heavy above
OCCLUSION_HEAVY = 0.30
OCCLUSION_INVALID = 0.70  # "occluded beyond recognition"
INVALID_PX = 6  # faces shorter than this are marked invalid (too small to annotate reliably)
LANDMARK_MIN_PX = 16  # like WIDERFace/RetinaFace labels, no landmarks on smaller faces


@dataclass
class FaceStyle:
    """Everything random about one face, sampled up front so drawing is a pure function of it."""

    skin: Color
    hair: Color
    cloth: Color
    eye: Color
    hair_kind: str  # short | long | curly | bald | hat
    hat: Color
    fringe: float  # how far the hairline comes down the forehead, 0..1
    yaw: float  # -1 (turned to image left) .. 1 (turned to image right)
    roll: float  # degrees, counter-clockwise
    expression: int  # 1 = exaggerated (open mouth, raised brows)
    beard: bool
    glasses: str  # "" | clear | sun
    lower: str  # "" | mask | scarf
    lower_color: Color
    obstacle: float  # 0 = none, else target fraction of the face to hide behind an object
    obstacle_angle: float
    obstacle_color: Color
    lfw: int  # index into the LFW face crops, -1 = drawn texture only
    lfw_flip: bool
    lfw_alpha: float
    feature_opacity: float
    blur: int  # 0 clear, 1 normal, 2 heavy
    blur_sigma: float  # in units of face height
    light: str  # "" | dark | bright | side
    light_amount: float
    light_angle: float
    shade: float  # signed sideways shading of the face, -1..1

    @property
    def pose(self) -> int:
        """WIDER FACE 'atypical pose': strong yaw (towards profile) or strong in-plane tilt."""
        return int(abs(self.yaw) > 0.55 or abs(self.roll) > 25.0)


@dataclass
class DrawnFace:
    """Ground truth of one face exactly as drawn into the image."""

    box: tuple[int, int, int, int]  # x, y, w, h in image pixels (WIDERFace xywh)
    landmarks: np.ndarray | None  # (5, 2): left eye, right eye, nose, mouth left, mouth right
    blur: int
    expression: int
    illumination: int
    invalid: int
    occlusion: int
    pose: int
    occluded_fraction: float


def _bgr(rgb: tuple[int, int, int]) -> Color:
    return (float(rgb[2]), float(rgb[1]), float(rgb[0]))


def _scale(color: Color, factor: float) -> Color:
    return tuple(float(min(255.0, c * factor)) for c in color)  # type: ignore[return-value]


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(float(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _jitter(rng: np.random.Generator, color: Color, amount: float) -> Color:
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in color)  # type: ignore[return-value]


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _axes(a: float, b: float) -> tuple[int, int]:
    return max(1, int(round(a * _ONE))), max(1, int(round(b * _ONE)))


def _thick(px: float) -> int:
    return max(1, int(round(px)))


def random_color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> Color:
    return tuple(float(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    """(200, 25, 25) float32 in 0..1; first 100 are faces, last 100 non-faces."""
    return skdata.lfw_subset().astype(np.float32)


@cache
def _texture(name: str) -> np.ndarray:
    return getattr(skdata, name)()


def sample_style(rng: np.random.Generator, face_h: float) -> FaceStyle:
    """Draw the look of one face; probabilities are tuned to roughly follow WIDER FACE's mix."""
    skin = _scale(_jitter(rng, _bgr(_SKIN_RGB[rng.integers(len(_SKIN_RGB))]), 10), rng.uniform(0.9, 1.08))
    turned = rng.random() < 0.3
    yaw = float(rng.uniform(-0.85, 0.85) if turned else rng.uniform(-0.2, 0.2))
    tilted = rng.random() < 0.22
    roll = float(rng.choice([-1, 1]) * rng.uniform(15, 50) if tilted else rng.normal(0, 5))
    blur = int(rng.choice(3, p=[0.7, 0.2, 0.1]))
    blur_sigma = {0: 0.0, 1: rng.uniform(0.02, 0.04), 2: rng.uniform(0.07, 0.12)}[blur]
    light = str(rng.choice(["", "dark", "bright", "side"], p=[0.82, 0.07, 0.04, 0.07]))
    lower = str(rng.choice(["", "mask", "scarf"], p=[0.86, 0.08, 0.06]))
    lfw = int(rng.integers(100)) if rng.random() < 0.5 else -1
    if face_h < 12:  # a real-face texture is invisible at this size; skip the warp
        lfw = -1
    return FaceStyle(
        skin=skin,
        hair=_jitter(rng, _bgr(_HAIR_RGB[rng.integers(len(_HAIR_RGB))]), 8),
        cloth=random_color(rng),
        eye=_bgr(_EYE_RGB[rng.integers(len(_EYE_RGB))]),
        hair_kind=str(rng.choice(["short", "long", "curly", "bald", "hat"], p=[0.4, 0.3, 0.12, 0.08, 0.1])),
        hat=random_color(rng),
        fringe=float(rng.uniform(0, 1)),
        yaw=yaw,
        roll=roll,
        expression=int(rng.random() < 0.2),
        beard=bool(rng.random() < 0.12),
        glasses=str(rng.choice(["", "clear", "sun"], p=[0.8, 0.12, 0.08])),
        lower=lower,
        lower_color=random_color(rng, 40),
        obstacle=float(rng.uniform(0.1, 0.85)) if rng.random() < 0.12 else 0.0,
        obstacle_angle=float(rng.uniform(0, 360)),
        obstacle_color=random_color(rng) if rng.random() < 0.7 else skin,
        lfw=lfw,
        lfw_flip=bool(rng.random() < 0.5),
        lfw_alpha=float(rng.uniform(0.45, 0.85)),
        feature_opacity=float(rng.uniform(0.35, 0.75)) if lfw >= 0 else 1.0,
        blur=blur,
        blur_sigma=float(blur_sigma),
        light=light,
        light_amount=float(rng.uniform(0, 1)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        shade=float(rng.uniform(-1, 1)),
    )


def face_extent(fw: float, fh: float, roll: float) -> tuple[float, float]:
    """Half width/height of the axis-aligned box around the rotated face ellipse."""
    t = math.radians(roll)
    a, b = fw / 2, fh / 2
    return math.hypot(a * math.cos(t), b * math.sin(t)), math.hypot(a * math.sin(t), b * math.cos(t))


def _face_outline(cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Egg-shaped face contour (narrower jaw than forehead) filling the a x b half-axes box."""
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    sin = np.sin(t)
    x = np.cos(t) * (1 - 0.16 * np.clip(sin, 0, None) ** 2)
    return np.column_stack([cx + a * x, cy + b * sin]).astype(np.float32)


def _ellipse_mask(
    shape: tuple[int, int], c: tuple[float, float], ax: tuple[float, float], angle: float = 0.0
) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, _pt(*c), _axes(*ax), angle, 0, 360, 255, -1, _AA, _SHIFT)
    return mask


def _poly_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts * _ONE).astype(np.int32)], 255, _AA, _SHIFT)
    return mask


def _paint(color: np.ndarray, alpha: np.ndarray, mask: np.ndarray, bgr: Color | np.ndarray) -> None:
    """Alpha-composite a flat colour (or a colour image) through an 8-bit coverage mask, in place."""
    m = mask.astype(np.float32)[..., None] / 255.0
    src = np.asarray(bgr, np.float32)
    color[:] = np.clip(color * (1 - m) + src * m, 0, 255).astype(np.uint8)
    np.maximum(alpha, mask, out=alpha)


class _FaceFrame:
    """Maps face-box units (u, v) to patch pixels, applying the yaw shift to inner features."""

    def __init__(self, cx: float, cy: float, w: float, h: float, yaw: float) -> None:
        self.cx, self.cy, self.w, self.h, self.yaw = cx, cy, w, h, yaw

    def x(self, u: float, depth: float = 1.0) -> float:
        """Horizontal position; ``depth`` > 1 for features sticking out (nose) that move more."""
        squeeze = 1 - 0.35 * abs(self.yaw)
        return self.cx + ((u - 0.5) * squeeze + 0.2 * self.yaw * depth) * self.w

    def y(self, v: float) -> float:
        return self.cy + (v - 0.5) * self.h


def _draw_features(img: np.ndarray, f: _FaceFrame, s: FaceStyle) -> np.ndarray:
    """Brows, eyes, nose, mouth (and beard); returns the 5 landmarks in patch pixels."""
    w, h = f.w, f.h
    ey = f.y(EYE_V)
    eyes = []
    for side in (-1, 1):
        ex = f.x(0.5 + side * EYE_DU)
        far = max(0.0, side * s.yaw)  # the eye on the side the face turns to is foreshortened
        ew = 0.085 * w * (1 - 0.5 * far)
        eh = (0.058 if s.expression else 0.042) * h
        cv2.ellipse(img, _pt(ex, ey), _axes(ew * 1.35, eh * 1.5), 0, 0, 360, _scale(s.skin, 0.86), -1, _AA, _SHIFT)
        cv2.ellipse(img, _pt(ex, ey), _axes(ew, eh), 0, 0, 360, (235, 238, 240), -1, _AA, _SHIFT)
        r = min(eh * 0.95, ew * 0.6)
        cv2.circle(img, _pt(ex + 0.2 * s.yaw * ew, ey), max(1, int(r * _ONE)), s.eye, -1, _AA, _SHIFT)
        cv2.circle(img, _pt(ex + 0.2 * s.yaw * ew, ey), max(1, int(r * 0.45 * _ONE)), (15, 15, 15), -1, _AA, _SHIFT)
        cv2.ellipse(img, _pt(ex, ey), _axes(ew, eh), 0, 180, 360, (30, 25, 25), _thick(0.012 * h), _AA, _SHIFT)
        by = f.y(BROW_V) - (0.035 * h if s.expression else 0.0)
        brow = _scale(s.hair, 0.7) if s.hair_kind != "bald" else _scale(s.skin, 0.45)
        cv2.ellipse(
            img, _pt(ex, by + 0.03 * h), _axes(ew * 1.3, 0.035 * h), 0, 200, 340, brow, _thick(0.028 * h), _AA, _SHIFT
        )
        eyes.append((ex, ey))

    nx, ny = f.x(0.5, depth=1.6), f.y(NOSE_V)
    shadow = _scale(s.skin, 0.78)
    cv2.line(
        img,
        _pt(f.x(0.5, 1.2) - 0.03 * w * np.sign(s.yaw or 1), f.y(0.45)),
        _pt(nx, ny - 0.05 * h),
        shadow,
        _thick(0.02 * h),
        _AA,
        _SHIFT,
    )
    cv2.ellipse(img, _pt(nx, ny), _axes(0.075 * w, 0.035 * h), 0, 0, 360, _scale(s.skin, 0.88), -1, _AA, _SHIFT)
    for side in (-1, 1):
        cv2.ellipse(
            img,
            _pt(nx + side * 0.036 * w, ny + 0.012 * h),
            _axes(0.019 * w, 0.011 * h),
            0,
            0,
            360,
            _scale(s.skin, 0.4),
            -1,
            _AA,
            _SHIFT,
        )
    cv2.ellipse(
        img, _pt(nx, ny - 0.015 * h), _axes(0.03 * w, 0.015 * h), 0, 0, 360, _scale(s.skin, 1.08), -1, _AA, _SHIFT
    )

    mx, my = f.x(0.5, depth=1.2), f.y(MOUTH_V)
    mw = MOUTH_DU * w * (1 - 0.3 * abs(s.yaw))
    lips = _mix(s.skin, (70.0, 60.0, 170.0), 0.45)
    if s.beard:
        # Chin and jaw below the mouth, rising along the cheeks into sideburns.
        xs = np.linspace(-1.2, 1.2, 25)
        top = np.column_stack([f.cx + 0.5 * w * xs, f.y(0.72) - 0.22 * h * xs**2])
        below = np.vstack([top, [[f.cx + 0.6 * w, f.cy + h], [f.cx - 0.6 * w, f.cy + h]]])
        beard = np.minimum(
            _ellipse_mask(img.shape[:2], (f.cx, f.cy + 0.05 * h), (0.5 * w, 0.47 * h)),
            _poly_mask(img.shape[:2], below.astype(np.float32)),
        )
        m = beard.astype(np.float32)[..., None] / 255.0
        img[:] = (img * (1 - m) + np.float32(s.hair) * m).astype(np.uint8)
    if s.expression:
        cv2.ellipse(img, _pt(mx, my), _axes(mw * 0.9, 0.075 * h), 0, 0, 360, (40, 30, 90), -1, _AA, _SHIFT)
        cv2.ellipse(
            img, _pt(mx, my - 0.01 * h), _axes(mw * 0.75, 0.045 * h), 0, 180, 360, (235, 235, 235), -1, _AA, _SHIFT
        )
        cv2.ellipse(img, _pt(mx, my), _axes(mw * 0.9, 0.075 * h), 0, 0, 360, lips, _thick(0.02 * h), _AA, _SHIFT)
        mw *= 0.9
    else:
        cv2.ellipse(img, _pt(mx, my), _axes(mw, 0.028 * h), 0, 0, 360, lips, -1, _AA, _SHIFT)
        smile = 0.02 * h
        cv2.ellipse(
            img,
            _pt(mx, my - smile),
            _axes(mw, smile + 0.004 * h),
            0,
            0,
            180,
            (45, 35, 60),
            _thick(0.012 * h),
            _AA,
            _SHIFT,
        )
    return np.float32([eyes[0], eyes[1], (nx, ny), (mx - mw, my), (mx + mw, my)])


def _hair_masks(shape: tuple[int, int], f: _FaceFrame, s: FaceStyle) -> np.ndarray:
    """Coverage of the hair (or hat) drawn on top of the head: an outer cap above a hairline."""
    a, b = f.w / 2, f.h / 2
    grow = 1.2 if s.hair_kind == "curly" else 1.1
    cap = _ellipse_mask(shape, (f.cx, f.cy - 0.07 * f.h), (a * grow, b * grow))
    # Everything below the hairline (a shallow parabola, lower with a fringe) is not hair.
    low = -0.62 + 0.28 * s.fringe if s.hair_kind != "hat" else -0.5
    xs = np.linspace(-1.3, 1.3, 27)
    line = f.cy + b * (low + 0.45 * xs**2 + 0.1 * s.yaw * xs)
    line = np.minimum(line, f.cy + 0.05 * f.h)
    pts = np.vstack(
        [np.column_stack([f.cx + a * xs, line]), [[f.cx + 1.4 * a, f.cy + f.h], [f.cx - 1.4 * a, f.cy + f.h]]]
    )
    below = _poly_mask(shape, pts)
    return np.minimum(cap, 255 - below)


def _occluders(shape: tuple[int, int], f: _FaceFrame, s: FaceStyle, eyes: np.ndarray) -> list[tuple[np.ndarray, Color]]:
    """Masks (and colours) of things in front of the face that count as occlusion."""
    out: list[tuple[np.ndarray, Color]] = []
    a, b = f.w / 2, f.h / 2
    if s.glasses == "sun":
        lens = np.zeros(shape, np.uint8)
        for ex, ey in eyes:
            cv2.ellipse(lens, _pt(ex, ey), _axes(0.13 * f.w, 0.085 * f.h), 0, 0, 360, 255, -1, _AA, _SHIFT)
        out.append((lens, (25.0, 25.0, 30.0)))
    if s.lower:
        top = f.y(0.5) if s.lower == "mask" else f.y(0.72)
        grow = 1.03 if s.lower == "mask" else 1.18
        region = _ellipse_mask(shape, (f.cx, f.cy), (a * grow, b * 1.02))
        if s.lower == "scarf":
            region[int(f.cy + 0.4 * f.h) :, max(0, int(f.cx - 1.2 * a)) : int(f.cx + 1.2 * a)] = 255
        xs = np.linspace(-1.3, 1.3, 27)
        edge = top - 0.05 * f.h * (1 - np.clip(xs, -1, 1) ** 2)
        above = _poly_mask(
            shape, np.vstack([np.column_stack([f.cx + a * xs, edge]), [[f.cx + 1.4 * a, 0], [f.cx - 1.4 * a, 0]]])
        )
        out.append((np.minimum(region, 255 - above), s.lower_color))
    if s.obstacle > 0:
        # A disc-shaped object entering from one side, its straight edge placed so that it hides
        # roughly the requested fraction of the face (the exact fraction is measured later).
        t = math.radians(s.obstacle_angle)
        d = np.float32([math.cos(t), math.sin(t)])
        reach = abs(d[0]) * a + abs(d[1]) * b
        cut = reach * (1 - 2 * s.obstacle)
        normal = np.float32([-d[1], d[0]])
        c = np.float32([f.cx, f.cy])
        far = 3 * (a + b)
        pts = np.float32(
            [
                c + d * cut + normal * far,
                c + d * far + normal * far,
                c + d * far - normal * far,
                c + d * cut - normal * far,
            ]
        )
        disc = _ellipse_mask(shape, (f.cx, f.cy), (1.6 * a, 1.5 * b))
        out.append((np.minimum(_poly_mask(shape, pts), disc), s.obstacle_color))
    return out


def _warp_lfw(index: int, flip: bool, dst: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    crop = _lfw()[index]
    if flip:
        crop = crop[:, ::-1].copy()
    m = cv2.getAffineTransform(_LFW_POINTS, dst.astype(np.float32))
    return cv2.warpAffine(crop, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@dataclass
class FacePatch:
    color: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) float32, 0..1
    center: np.ndarray  # (2,) centre of the face ellipse in patch pixels
    landmarks: np.ndarray  # (5, 2) patch pixels
    occluded: float  # fraction of the face ellipse hidden by occluders


def render_face(fw: float, fh: float, s: FaceStyle) -> FacePatch:
    """Paint one upright face (with hair, neck, shoulders, occluders) at its final size.

    Small faces are painted at >= 64 px and shrunk with INTER_AREA so they are anti-aliased
    like a downscaled photo rather than a jagged 8-pixel doodle.
    """
    k = max(1.0, 64.0 / fh)
    w, h = fw * k, fh * k
    pad_x, pad_top, pad_bot = 0.5 * w, 0.32 * h, 0.55 * h
    pw, ph = int(math.ceil(w + 2 * pad_x)), int(math.ceil(h + pad_top + pad_bot))
    shape = (ph, pw)
    f = _FaceFrame(pad_x + w / 2, pad_top + h / 2, w, h, s.yaw)
    a, b = w / 2, h / 2
    color = np.zeros((ph, pw, 3), np.uint8)
    alpha = np.zeros(shape, np.uint8)

    def fill_ellipse(c: tuple[float, float], ax: tuple[float, float], col: Color) -> None:
        cv2.ellipse(color, _pt(*c), _axes(*ax), 0, 0, 360, col, -1, _AA, _SHIFT)
        cv2.ellipse(alpha, _pt(*c), _axes(*ax), 0, 0, 360, 255, -1, _AA, _SHIFT)

    fill_ellipse((f.cx, f.cy + b + 0.42 * h), (0.95 * w, 0.34 * h), s.cloth)
    if s.hair_kind == "long":
        fill_ellipse((f.cx, f.cy + 0.15 * h), (a * 1.22, b * 1.25), s.hair)
    neck = np.float32([[f.cx - 0.2 * w, f.cy], [f.cx + 0.2 * w, f.cy], [f.cx + 0.22 * w, ph], [f.cx - 0.22 * w, ph]])
    _paint(color, alpha, _poly_mask(shape, neck), _scale(s.skin, 0.8))
    for side in (-1, 1):
        if side * s.yaw < 0.35:
            fill_ellipse(
                (f.cx + side * a * (0.97 - 0.25 * abs(s.yaw)), f.y(0.48)), (0.09 * w, 0.13 * h), _scale(s.skin, 0.9)
            )

    face = _poly_mask(shape, _face_outline(f.cx, f.cy, a, b))
    _paint(color, alpha, face, s.skin)
    # Soft 3-D shading (darker rim, one side darker) and, for half the faces, real face texture.
    y0, y1 = max(0, int(f.cy - b) - 1), min(ph, int(f.cy + b) + 2)
    x0, x1 = max(0, int(f.cx - a) - 1), min(pw, int(f.cx + a) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    nx, ny = (xx - f.cx) / a, (yy - f.cy) / b
    gain = 1 - 0.22 * (nx**2 + ny**2) ** 2 + 0.12 * s.shade * nx
    if s.lfw >= 0:
        dst = np.float32(
            [[f.x(0.5 - EYE_DU), f.y(EYE_V)], [f.x(0.5 + EYE_DU), f.y(EYE_V)], [f.x(0.5, 1.2), f.y(MOUTH_V)]]
        )
        tex = _warp_lfw(s.lfw, s.lfw_flip, dst, (pw, ph))[y0:y1, x0:x1]
        m_face = face[y0:y1, x0:x1] > 128
        tex = np.clip(tex / max(1e-3, float(tex[m_face].mean())), 0.25, 1.8)
        # Fade the texture out towards the outline, where the crops show hair and background.
        weight = s.lfw_alpha * np.clip(1.4 - (nx**2 + ny**2), 0, 1)
        gain *= 1 - weight + weight * tex
    fm = face[y0:y1, x0:x1].astype(np.float32)[..., None] / 255.0
    roi = color[y0:y1, x0:x1].astype(np.float32)
    color[y0:y1, x0:x1] = np.clip(roi * (1 - fm + fm * gain[..., None]), 0, 255).astype(np.uint8)

    if s.feature_opacity < 1.0:
        layer = color.copy()
        landmarks = _draw_features(layer, f, s)
        o = s.feature_opacity
        color[:] = (color * (1 - o) + layer * o).astype(np.uint8)
    else:
        landmarks = _draw_features(color, f, s)

    if s.hair_kind != "bald":
        _paint(color, alpha, _hair_masks(shape, f, s), s.hat if s.hair_kind == "hat" else s.hair)
    if s.hair_kind == "hat":
        fill_ellipse((f.cx, f.y(0.12)), (a * 1.35, 0.05 * h), _scale(s.hat, 0.8))
    if s.glasses:
        frame = (30.0, 30.0, 30.0)
        for ex, ey in landmarks[:2]:
            cv2.ellipse(
                color, _pt(ex, ey), _axes(0.13 * w, 0.085 * h), 0, 0, 360, frame, _thick(0.016 * h), _AA, _SHIFT
            )
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        cv2.line(color, _pt(lx + 0.13 * w, ly), _pt(rx - 0.13 * w, ry), frame, _thick(0.016 * h), _AA, _SHIFT)

    occluded = 0.0
    face_f = face.astype(np.float32) / 255.0
    hidden = np.zeros(shape, np.float32)
    for mask, col in _occluders(shape, f, s, landmarks[:2]):
        _paint(color, alpha, mask, col)
        np.maximum(hidden, mask.astype(np.float32) / 255.0, out=hidden)
    if hidden.any():
        occluded = float((hidden * face_f).sum() / max(1.0, face_f.sum()))

    if s.light:
        c = color.astype(np.float32)
        if s.light == "dark":
            c *= 0.22 + 0.2 * s.light_amount
        elif s.light == "bright":
            c = 255 - (255 - c) * (0.12 + 0.2 * s.light_amount)
        else:  # hard side light: one half of the face falls into deep shadow
            ramp = (np.arange(pw, dtype=np.float32) - f.cx) / a * math.cos(s.light_angle)
            c *= np.clip(0.55 + 0.45 * ramp, 0.12, 1.0)[None, :, None]
        color = np.clip(c, 0, 255).astype(np.uint8)

    # Fade the shoulders out towards the bottom of the patch instead of cutting them off.
    fade = np.clip((ph - np.arange(ph, dtype=np.float32)) / (0.3 * h), 0, 1)
    alpha = (alpha * fade[:, None]).astype(np.uint8)
    if k > 1.0:
        out = (max(1, int(round(pw / k))), max(1, int(round(ph / k))))
        sx, sy = out[0] / pw, out[1] / ph
        color = cv2.resize(color, out, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, out, interpolation=cv2.INTER_AREA)
        center = np.float32([f.cx * sx, f.cy * sy])
        landmarks = landmarks * np.float32([sx, sy])
    else:
        center = np.float32([f.cx, f.cy])
    return FacePatch(color, alpha.astype(np.float32) / 255.0, center, landmarks, occluded)


def _rotate(p: FacePatch, angle: float) -> FacePatch:
    if abs(angle) < 0.5:
        return p
    ph, pw = p.alpha.shape
    t = math.radians(angle)
    nw = int(math.ceil(abs(pw * math.cos(t)) + abs(ph * math.sin(t))))
    nh = int(math.ceil(abs(pw * math.sin(t)) + abs(ph * math.cos(t))))
    m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, 1.0)
    m[:, 2] += (nw - pw) / 2, (nh - ph) / 2
    color = cv2.warpAffine(p.color, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    alpha = cv2.warpAffine(p.alpha, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)

    def move(pts: np.ndarray) -> np.ndarray:
        return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)

    return FacePatch(color, alpha, move(p.center[None])[0], move(p.landmarks), p.occluded)


def _gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur that stays cheap for huge sigmas (blur a downscaled copy, then upscale)."""
    if sigma < 0.3:
        return img
    if sigma <= 4.0:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    f = 3.0 / sigma
    small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), 3.0), (w, h), interpolation=cv2.INTER_LINEAR)


def blur_sigma_px(s: FaceStyle, fh: float) -> float:
    """Blur in pixels: relative to face size, with a floor so tiny faces visibly blur too."""
    if s.blur == 0:
        return 0.0
    return max(s.blur_sigma * fh, 0.6 if s.blur == 1 else 1.3)


def draw_face(
    img: np.ndarray, s: FaceStyle, cx: float, cy: float, fw: float, fh: float, dark_scene: bool = False
) -> DrawnFace:
    """Render a face centred at (cx, cy) into ``img`` (in place) and return its ground truth."""
    p = _rotate(render_face(fw, fh, s), s.roll)
    sigma = blur_sigma_px(s, fh)
    if sigma > 0:  # room for the blur to spread, else the patch border shows as a hard edge
        m = int(math.ceil(3 * sigma)) + 1
        p.color = cv2.copyMakeBorder(p.color, m, m, m, m, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        p.alpha = cv2.copyMakeBorder(p.alpha, m, m, m, m, cv2.BORDER_CONSTANT, value=0)
        p.center, p.landmarks = p.center + m, p.landmarks + m
    color, alpha = _gaussian(p.color, sigma), _gaussian(p.alpha, sigma)
    ph, pw = alpha.shape
    ox, oy = int(round(cx - p.center[0])), int(round(cy - p.center[1]))
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(W, ox + pw), min(H, oy + ph)
    if x1 > x0 and y1 > y0:
        a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox, None]
        src = color[y0 - oy : y1 - oy, x0 - ox : x1 - ox].astype(np.float32)
        dst = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = np.clip(dst * (1 - a) + src * a + 0.5, 0, 255).astype(np.uint8)

    center = p.center + np.float32([ox, oy])
    hx, hy = face_extent(fw, fh, s.roll)
    bx0, by0 = max(0, int(round(center[0] - hx))), max(0, int(round(center[1] - hy)))
    bx1, by1 = min(W, int(round(center[0] + hx))), min(H, int(round(center[1] + hy)))
    bw, bh = max(1, bx1 - bx0), max(1, by1 - by0)
    occlusion = 0 if p.occluded < OCCLUSION_PARTIAL else 1 if p.occluded <= OCCLUSION_HEAVY else 2
    invalid = int(bh < INVALID_PX or p.occluded > OCCLUSION_INVALID)
    landmarks = None
    if not invalid and bh >= LANDMARK_MIN_PX:
        landmarks = p.landmarks + np.float32([ox, oy])
        landmarks[:, 0] = np.clip(landmarks[:, 0], bx0, bx0 + bw)
        landmarks[:, 1] = np.clip(landmarks[:, 1], by0, by0 + bh)
    return DrawnFace(
        box=(bx0, by0, bw, bh),
        landmarks=landmarks,
        blur=s.blur,
        expression=s.expression,
        illumination=int(bool(s.light) or dark_scene),
        invalid=invalid,
        occlusion=occlusion,
        pose=s.pose,
        occluded_fraction=round(p.occluded, 4),
    )


