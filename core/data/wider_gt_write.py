"""Writing WIDER FACE ground truth in the official .mat layout (wider_face_val.mat and the three setting files),
read back exactly by core.data.wider_gt."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from core.data.wider_gt import _HEADER, ATTRIBUTES, FACE_FILE, SETTING_FILES, GTImage, WiderGT
from core.io.atomic import atomic_write_bytes


def _cell(items: list[Any]) -> np.ndarray:
    """(n, 1) object array; built element-wise so numpy never broadcasts the items."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _gt_list(keep: np.ndarray, num_faces: int) -> np.ndarray:
    """1-based column in the dtype and empty shape MATLAB produced for the official files."""
    if keep.size == 0:
        return np.zeros((0, 0) if num_faces == 1 else (0, 1), dtype=np.uint8)
    one_based = keep + 1
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32) if one_based.max() <= np.iinfo(t).max)
    return one_based.astype(dtype).reshape(-1, 1)


def _int_array(where: str, values: np.ndarray, dtype: type[np.integer], what: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if values.size and (
        not np.all(np.isfinite(values))
        or not np.array_equal(values, np.round(values))
        or values.min() < info.min
        or values.max() > info.max
    ):
        raise ValueError(f"{where}: {what} must be integers in {np.dtype(dtype).name} range for the official layout")
    return values.astype(dtype)


def _group(images: Iterable[GTImage]) -> list[tuple[str, list[GTImage]]]:
    gt = images if isinstance(images, WiderGT) else WiderGT(tuple(images))
    groups: dict[str, list[GTImage]] = {}
    for im in gt.images:
        groups.setdefault(im.event, []).append(im)
    return list(groups.items())


def _mat_dicts(images: Iterable[GTImage]) -> dict[str, dict[str, np.ndarray]]:
    groups = _group(images)
    common: dict[str, np.ndarray] = {
        "event_list": _cell([np.array([event]) for event, _ in groups]),
        "file_list": _cell([_cell([np.array([im.name]) for im in ims]) for _, ims in groups]),
        "face_bbx_list": _cell(
            [
                _cell([_int_array(f"{im.event}/{im.name}", im.boxes, np.int32, "boxes") for im in ims])
                for _, ims in groups
            ]
        ),
    }
    for a in ATTRIBUTES:
        common[f"{a}_label_list"] = _cell(
            [
                _cell([_int_array(f"{im.event}/{im.name}", im.attributes[a], np.uint8, a).reshape(-1, 1) for im in ims])
                for _, ims in groups
            ]
        )
    out = {FACE_FILE: common}
    for s, fname in SETTING_FILES.items():
        gt_list = _cell([_cell([_gt_list(im.keep[s], im.num_faces) for im in ims]) for _, ims in groups])
        out[fname] = {**common, "gt_list": gt_list}
    return out


def write_wider_gt(out_dir: str | os.PathLike[str], images: Iterable[GTImage]) -> dict[str, Path]:
    """Writes the four official .mat files; returns file name -> path.

    Images must be grouped by event (their order is the file order). Boxes must be integral and
    labels in 0..255, as in the official int32/uint8 arrays; anything else raises ValueError
    instead of being rounded, so reading the files back gives exactly the same images. Output
    bytes depend only on the images (fixed header text instead of scipy's timestamp), and each
    file is replaced atomically.
    """
    import scipy.io as sio

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for fname, mdict in _mat_dicts(images).items():
        path = out_dir / fname
        buf = io.BytesIO()
        sio.savemat(buf, mdict, format="5", do_compression=True, oned_as="column")
        data = bytearray(buf.getvalue())
        data[: len(_HEADER)] = _HEADER  # scipy stamps the current time; a fixed text keeps output reproducible
        atomic_write_bytes(path, bytes(data))
        written[fname] = path
    return written
