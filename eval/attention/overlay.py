"""Upsample a feature-resolution mask to the image and blend it as a colour heatmap."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "turbo": cv2.COLORMAP_TURBO,
}


def upsample_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of an (h, w) mask to (height, width), clipped to [0, 1]."""
    resized = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)


def overlay_mask(
    image_rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.5, colormap: str = "jet", normalize: bool = True
) -> np.ndarray:
    """RGB uint8 image with `mask` drawn on top; `normalize` stretches the mask to its own min-max range
    (masks often live in a narrow band around 0.5, invisible without it)."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {sorted(COLORMAPS)}")
    h, w = image_rgb.shape[:2]
    up = upsample_mask(mask, h, w)
    if normalize:
        lo, hi = float(up.min()), float(up.max())
        up = (up - lo) / (hi - lo) if hi - lo > 1e-8 else np.zeros_like(up)
    heat_bgr = cv2.applyColorMap((up * 255).astype(np.uint8), COLORMAPS[colormap])
    heat_rgb = heat_bgr[..., ::-1]
    blended = (1 - alpha) * image_rgb.astype(np.float32) + alpha * heat_rgb.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
