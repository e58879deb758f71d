"""Turns whatever a user hands the model into a clean RGB uint8 array, or a clear error.

Kept apart from the model so the CLI, the dashboard and the tests share one set of rules.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_PIXELS = 40_000_000


class ImageInputError(ValueError):
    """The input cannot be used as an image; the message says why."""


def to_rgb_uint8(image: object) -> np.ndarray:
    """Accept HxW, HxWx1/3/4 arrays (uint8, uint16, float in [0,1] or bool) or a CHW/HWC tensor.

    Grayscale is replicated to three channels, alpha is dropped, 16-bit is scaled to 8-bit and float
    images are taken as [0, 1]. Anything else raises `ImageInputError` before reaching torch.
    """
    if isinstance(image, torch.Tensor):
        arr = image.detach().cpu()
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise ImageInputError(f"expected a single image, got a batch of {arr.shape[0]}")
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.permute(1, 2, 0)
        image = arr.numpy()
    if not isinstance(image, np.ndarray):
        raise ImageInputError(f"expected an image array, got {type(image).__name__}")
    arr = image
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageInputError(f"expected HxW, HxWx3 or HxWx4 image, got shape {tuple(image.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageInputError(f"image is empty (shape {tuple(image.shape)})")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ImageInputError(f"image has {arr.shape[0] * arr.shape[1]:,} pixels, over the {MAX_PIXELS:,} limit")
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageInputError("float image contains NaN or infinite values")
        return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ImageInputError(f"unsupported image dtype {arr.dtype}; use uint8, uint16, float or bool")


def rgb_to_model_tensor(rgb: np.ndarray, bgr_mean: tuple[float, float, float]) -> torch.Tensor:
    """RetinaFace preprocessing: RGB -> BGR float, minus the BGR mean, as a (1, 3, H, W) tensor."""
    bgr = rgb[..., ::-1].astype(np.float32) - np.asarray(bgr_mean, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]
