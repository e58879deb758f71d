"""Drawing what a detector saw: one level's masks, channel rankings, the parallel-minus-sequential difference on a
diverging scale, images fitted to a side, detections drawn. Shared by the Heatmaps page, eval.detect and the
figures."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from core.boxes.postprocess import Detections
from core.detector import LEVELS, STAGES, Heatmaps
from eval.attention.overlay import upsample_mask

LEVEL_CHOICES: tuple[str, ...] = (*STAGES, *LEVELS, "all")


MAX_DRAWN = 50


# Blue (negative) - white (0) - red (positive), the usual diverging scale (ColorBrewer RdBu ends).
_DIVERGING_RGB = np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]], dtype=np.float32)


def _flat(heatmaps: Heatmaps) -> dict[str, dict[str, np.ndarray]]:
    return {**heatmaps.get("backbone", {}), **heatmaps.get("bifpn", {})}


def level_masks(heatmaps: Heatmaps, level: str) -> dict[str, np.ndarray | None]:
    """{"channel", "spatial", "hybrid"} for one level; for "all", the spatial and hybrid masks of the six
    levels averaged at the finest resolution (stage1) and no single channel mask (channel counts differ)."""
    flat = _flat(heatmaps)
    if level != "all":
        if level not in flat:
            raise KeyError(f"unknown level {level!r}; choose one of {LEVEL_CHOICES}")
        return {k: flat[level][f"{k}_mask"] for k in ("channel", "spatial", "hybrid")}
    names = [n for n in (*STAGES, *LEVELS) if n in flat]
    if not names:
        raise KeyError("no attention masks in these heatmaps")
    h, w = max((flat[n]["spatial_mask"].shape for n in names), key=lambda s: s[0] * s[1])
    out: dict[str, np.ndarray | None] = {"channel": None}
    for kind in ("spatial", "hybrid"):
        out[kind] = np.mean([upsample_mask(flat[n][f"{kind}_mask"], h, w) for n in names], axis=0).astype(np.float32)
    return out


def top_channels(heatmaps: Heatmaps, level: str, k: int = 16) -> pd.DataFrame:
    """The `k` strongest channel-mask weights of a level (or over all levels), strongest first.

    Columns: level, channel, label ("P3 #17"), weight.
    """
    flat = _flat(heatmaps)
    names = [n for n in (*STAGES, *LEVELS) if n in flat] if level == "all" else [level]
    rows = []
    for name in names:
        weights = np.asarray(flat[name]["channel_mask"], dtype=np.float32)
        for idx in np.argsort(-weights, kind="stable")[:k]:
            rows.append({"level": name, "channel": int(idx), "label": f"{name} #{int(idx)}",
                         "weight": float(weights[idx])})
    frame = pd.DataFrame(rows, columns=["level", "channel", "label", "weight"])
    return frame.sort_values("weight", ascending=False, kind="stable").head(k).reset_index(drop=True)


def hybrid_difference(parallel: Heatmaps, sequential: Heatmaps, level: str) -> np.ndarray:
    """Parallel minus sequential hybrid mask at `level` (values in [-1, 1], feature resolution)."""
    a = level_masks(parallel, level)["hybrid"]
    b = level_masks(sequential, level)["hybrid"]
    if a.shape != b.shape:
        b = upsample_mask(b, *a.shape)
    return (a - b).astype(np.float32)


def diverging_colors(values: np.ndarray, limit: float) -> np.ndarray:
    """Map values in [-limit, limit] to blue-white-red RGB uint8 (0 is white)."""
    t = np.clip(values / max(limit, 1e-12), -1.0, 1.0)
    pos = (t + 1.0)  # 0..2 across the three anchor colours
    out = np.empty((*t.shape, 3), dtype=np.float32)
    for c in range(3):
        out[..., c] = np.interp(pos, [0.0, 1.0, 2.0], _DIVERGING_RGB[:, c])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def diverging_overlay(rgb: np.ndarray, diff: np.ndarray, alpha: float = 0.6, limit: float | None = None) -> np.ndarray:
    """Blend a signed difference map on the image; the scale is symmetric around 0 (white = no change).

    `limit` defaults to the largest absolute difference, so small differences stay visible; the caller
    shows the limit next to the image.
    """
    h, w = rgb.shape[:2]
    up = cv2.resize(diff.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    limit = float(np.abs(diff).max()) if limit is None else float(limit)
    colors = diverging_colors(up, limit if limit > 0 else 1.0).astype(np.float32)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colors
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def fit_image(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Downscale so the long side is at most `side` (area interpolation); returns the image and the
    scale applied (1.0 and the image itself when it already fits)."""
    scale = min(1.0, side / max(rgb.shape[:2]))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def scale_detections(dets: Detections, scale: float) -> Detections:
    """Detections in the coordinates of an image resized by `scale` (boxes and landmarks; scores kept)."""
    return Detections(boxes=dets.boxes * scale, scores=dets.scores, landmarks=dets.landmarks * scale)


def filter_detections(dets: Detections, conf_thresh: float) -> Detections:
    """Detections scoring at least `conf_thresh`. Same result as running NMS at that threshold (a lower-
    scored box never suppresses a higher one), so one low-threshold forward serves every slider value."""
    keep = dets.scores >= conf_thresh
    return Detections(boxes=dets.boxes[keep], scores=dets.scores[keep], landmarks=dets.landmarks[keep])


def draw_detections(rgb: np.ndarray, dets: Detections, max_boxes: int = MAX_DRAWN) -> np.ndarray:
    """Boxes, scores and five landmarks of the top `max_boxes` detections, on a copy of the image."""
    out = np.ascontiguousarray(rgb.copy())
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    for box, score, lms in zip(dets.boxes[:max_boxes], dets.scores[:max_boxes], dets.landmarks[:max_boxes],
                               strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        cv2.putText(out, f"{score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick,
                    (255, 255, 0), max(1, thick // 2), cv2.LINE_AA)
        for x, y in np.asarray(lms).reshape(5, 2):
            cv2.circle(out, (int(round(float(x))), int(round(float(y)))), thick + 1, (255, 0, 0), -1)
    return out
