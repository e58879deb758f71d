"""Decode an uploaded image file into RGB uint8, or fail with one clear `ImageInputError`.

Uploads are untrusted bytes: everything Pillow can raise (corrupt or truncated data, a text or PDF
file renamed .png, a decompression bomb) becomes an `ImageInputError` whose message can be shown
as is, so a bad file never crashes the page. The pixel limit is checked from the header, before any
pixel is decoded.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import PurePath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.io.image_input import ImageInputError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
UPLOAD_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp")
# Pillow format names accepted (MPO: multi-picture JPEG written by many phone cameras).
_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB"})


def decode_upload(
    data: bytes, filename: str, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> np.ndarray:
    """Bytes of a jpg/png/webp/bmp file -> HxWx3 RGB uint8, EXIF orientation applied.

    Grayscale, palette, RGBA/LA (composited on white), CMYK and 16/32-bit grayscale are converted;
    animated files give their first frame.
    """
    name = PurePath(filename or "upload").name
    ext = PurePath(name).suffix.lower().lstrip(".")
    if ext not in UPLOAD_EXTENSIONS:
        raise ImageInputError(f"{name}: unsupported file type {('.' + ext) if ext else '(no extension)'}; "
                              f"use {', '.join('.' + e for e in UPLOAD_EXTENSIONS)}")
    if not data:
        raise ImageInputError(f"{name}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageInputError(f"{name}: {len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB upload limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in _FORMATS:
                raise ImageInputError(f"{name}: {fmt} images are not supported; use JPEG, PNG, WebP or BMP")
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageInputError(f"{name}: image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageInputError(f"{name}: {width}x{height} = {width * height:,} pixels is "
                                      f"{_over_limit(max_pixels)}")
            img.seek(0)
            img.load()
            img = _exif_transpose(img)
            return _to_rgb(img, name)
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not an image file (or a corrupt one) — expected JPEG, PNG, WebP or BMP "
                              "data") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses far larger images while reading the header, naming its own limit: give ours.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "its pixel count"
        raise ImageInputError(f"{name}: {size} is {_over_limit(max_pixels)}") from None
    except MemoryError:
        raise ImageInputError(f"{name}: image too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad upload, never a page crash
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            raise ImageInputError(f"{name}: the file is truncated (incomplete image data)") from None
        raise ImageInputError(f"{name}: corrupt or unreadable image ({reason})") from None


def _over_limit(max_pixels: int) -> str:
    return (f"over the upload pixel limit of {max_pixels:,} pixels ({max_pixels / 1e6:g} MP); refused "
            "before decoding (possible decompression bomb)")


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored rather than rejecting the photo."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - orientation is a nicety, the pixels are still valid
        return img


def _to_rgb(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            peak = float(np.nanmax(arr)) if arr.size else 0.0
            arr = np.nan_to_num(arr, nan=0.0) * (255.0 if peak <= 1.0 else 1.0)
            gray = np.clip(arr, 0, 255).astype(np.uint8)
        else:  # 16-bit samples (Pillow opens 16-bit PNG as "I;16" or "I"): keep the top 8 bits
            gray = (np.clip(arr.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageInputError(f"{name}: could not convert mode {mode} to RGB")
    return np.ascontiguousarray(rgb)
