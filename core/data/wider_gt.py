"""Official WIDER FACE evaluation ground truth (.mat files): typed reader and exact writer.

The official ground truth is four MATLAB files. ``wider_face_val.mat`` holds, per event, the image
names, face boxes and attribute labels; ``wider_{easy,medium,hard}_val.mat`` repeat all of that and
add ``gt_list``: per image, the 1-based indices of the faces that count in that setting.

Layout, as ``scipy.io.loadmat`` returns it (E events, n images in an event, N faces in an image):

=========================  ===========  ===================================================
key                        outer        per image (inside a per-event (n, 1) object array)
=========================  ===========  ===================================================
event_list                 (E, 1) obj   per event: (1,) str, e.g. ``'0--Parade'``
file_list                  (E, 1) obj   (1,) str, image name without ``.jpg``
face_bbx_list              (E, 1) obj   (N, 4) int32, x y w h
<attribute>_label_list     (E, 1) obj   (N, 1) uint8 (blur, expression, illumination,
                                        invalid, occlusion, pose)
gt_list (setting files)    (E, 1) obj   (k, 1) 1-based indices; uint8, or uint16 when an
                                        index exceeds 255 (MATLAB stored doubles compactly);
                                        empty lists are (0, 0) for one-face images, else (0, 1)
=========================  ===========  ===================================================

``write_wider_gt`` reproduces that layout exactly, so ``loadmat`` output of a written file is
indistinguishable from the official one (keys, shapes, dtypes, values). One difference remains
below the scipy level: MATLAB's class of ``gt_list`` is double (only its storage is uint8/uint16),
ours is uint8/uint16, so ``loadmat(..., mat_dtype=True)`` and MATLAB itself see integers there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.io.cli_paths import error_line

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
ATTRIBUTES: tuple[str, ...] = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
FACE_FILE = "wider_face_val.mat"
SETTING_FILES: dict[str, str] = {s: f"wider_{s}_val.mat" for s in SETTINGS}
GT_FILES: tuple[str, ...] = (FACE_FILE, *SETTING_FILES.values())

# The 116-byte text field at the start of a MAT 5 file.
_HEADER = b"MATLAB 5.0 MAT-file, written by FeatherFace Lab core.data.wider_gt (WIDER FACE layout)".ljust(116)
_LIST_KEYS = ("event_list", "file_list", "face_bbx_list", *(f"{a}_label_list" for a in ATTRIBUTES))


class WiderGTError(ValueError):
    """A ground-truth file is missing, unreadable or not in the official layout."""


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class GTImage:
    """Ground truth of one image.

    boxes: (N, 4) float64 x y w h in pixels. attributes: name -> (N,) int64 label, one entry per
    name in ATTRIBUTES. keep: setting -> 0-based indices (int64) of the faces counted in that
    setting. Arrays are copied and made read-only so instances are really immutable.
    """

    event: str
    name: str
    boxes: np.ndarray = field(repr=False)
    attributes: dict[str, np.ndarray] = field(repr=False)
    keep: dict[str, np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        where = f"{self.event}/{self.name}"
        if not self.event or not self.name or "/" in self.name:
            raise ValueError(f"{where}: event and image name must be non-empty, name without '/'")
        boxes = np.array(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{where}: boxes must be (N, 4), got {boxes.shape}")
        n = len(boxes)
        if set(self.attributes) != set(ATTRIBUTES):
            raise ValueError(f"{where}: attributes must be exactly {ATTRIBUTES}, got {sorted(self.attributes)}")
        attrs = {}
        for a in ATTRIBUTES:
            v = np.array(self.attributes[a], dtype=np.int64).reshape(-1)
            if len(v) != n:
                raise ValueError(f"{where}: attribute {a!r} has {len(v)} labels for {n} faces")
            attrs[a] = _frozen(v)
        if set(self.keep) != set(SETTINGS):
            raise ValueError(f"{where}: keep must have exactly {SETTINGS}, got {sorted(self.keep)}")
        keep = {}
        for s in SETTINGS:
            k = np.array(self.keep[s], dtype=np.int64).reshape(-1)
            if k.size and (k.min() < 0 or k.max() >= n or len(np.unique(k)) != len(k)):
                raise ValueError(f"{where}: keep[{s!r}] must be unique 0-based indices below {n}, got {k}")
            keep[s] = _frozen(k)
        object.__setattr__(self, "boxes", _frozen(boxes))
        object.__setattr__(self, "attributes", attrs)
        object.__setattr__(self, "keep", keep)

    @property
    def num_faces(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True, eq=False)
class WiderGT:
    """All images of an evaluation set, grouped by event in file order."""

    images: tuple[GTImage, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        _check_grouping(self.images)

    @cached_property
    def events(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(im.event for im in self.images))

    @cached_property
    def index(self) -> dict[tuple[str, str], GTImage]:
        """(event, image name) -> image, for prediction lookups."""
        return {(im.event, im.name): im for im in self.images}

    @property
    def num_faces(self) -> int:
        return sum(im.num_faces for im in self.images)

    def __len__(self) -> int:
        return len(self.images)


def _check_grouping(images: tuple[GTImage, ...]) -> None:
    """The .mat layout stores images per event, so an event's images must be contiguous."""
    seen_events: set[str] = set()
    seen_images: set[tuple[str, str]] = set()
    previous = None
    for im in images:
        if im.event != previous:
            if im.event in seen_events:
                raise ValueError(f"images of event {im.event!r} are not contiguous; group them by event")
            seen_events.add(im.event)
            previous = im.event
        if (im.event, im.name) in seen_images:
            raise ValueError(f"duplicate image {im.event}/{im.name}")
        seen_images.add((im.event, im.name))


def _check_complete(path: Path) -> None:
    """Walks the top-level MAT 5 variable tags: loadmat silently drops variables cut off at the end."""
    data = path.read_bytes()
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return  # not MAT 5; loadmat reports what it is
    order = "<" if data[126:128] == b"IM" else ">"
    pos = 128
    while pos < len(data):
        if pos + 8 > len(data):
            raise WiderGTError(f"{path}: truncated .mat file (cut inside a variable header at byte {pos})")
        nbytes = int(np.frombuffer(data, dtype=f"{order}u4", count=2, offset=pos)[1])
        pos += 8 + nbytes
        if pos > len(data):
            raise WiderGTError(f"{path}: truncated .mat file (a variable needs {pos} bytes, file has {len(data)})")


def _loadmat(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise WiderGTError(f"{path}: file not found")
    _check_complete(path)
    import scipy.io as sio  # here, not at import: pages importing this module seldom read a .mat file

    try:
        mat = sio.loadmat(str(path), variable_names=list(keys))
    except Exception as exc:  # scipy raises many types (OSError, ValueError, IndexError, zlib.error)
        raise WiderGTError(f"{path}: not a readable MATLAB .mat file ({error_line(exc)})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise WiderGTError(f"{path}: missing key(s) {missing}")
    return mat


def _check_outer(path: Path, mat: dict[str, Any]) -> None:
    """Every list key must be an (E, 1) cell array with the same E."""
    e = None
    for key in mat:
        if key.startswith("__"):
            continue
        v = mat[key]
        if not isinstance(v, np.ndarray) or v.dtype != object or v.ndim != 2 or v.shape[1] != 1:
            raise WiderGTError(f"{path}: {key} must be an (E, 1) cell array, got {getattr(v, 'shape', type(v))}")
        if e is None:
            e = v.shape[0]
        elif v.shape[0] != e:
            raise WiderGTError(f"{path}: {key} has {v.shape[0]} events, expected {e}")


def _string(path: Path, where: str, v: Any) -> str:
    if isinstance(v, np.ndarray) and v.dtype.kind == "U" and v.size == 1:
        return str(v.reshape(-1)[0])
    raise WiderGTError(f"{path}: {where} must be a string, got {v!r}")


def _per_event(path: Path, mat: dict[str, Any], key: str, e: int, n_img: int | None) -> np.ndarray:
    cell = mat[key][e][0]
    if not isinstance(cell, np.ndarray) or cell.dtype != object or (cell.size and cell.ndim != 2):
        raise WiderGTError(f"{path}: {key}[{e}] must be an (n_images, 1) cell array")
    cell = cell.reshape(-1)
    if n_img is not None and len(cell) != n_img:
        raise WiderGTError(f"{path}: {key}[{e}] has {len(cell)} images, file_list has {n_img}")
    return cell


def _names(path: Path, mat: dict[str, Any]) -> list[tuple[str, list[str]]]:
    out = []
    for e in range(mat["event_list"].shape[0]):
        event = _string(path, f"event_list[{e}]", mat["event_list"][e][0])
        files = _per_event(path, mat, "file_list", e, None)
        out.append((event, [_string(path, f"file_list[{e}][{j}]", f) for j, f in enumerate(files)]))
    return out


def load_wider_gt(gt_dir: str | os.PathLike[str]) -> WiderGT:
    """Reads the four official .mat files from gt_dir (or the folder of a given .mat path)."""
    gt_dir = Path(gt_dir)
    if gt_dir.is_file():
        gt_dir = gt_dir.parent
    face_path = gt_dir / FACE_FILE
    face = _loadmat(face_path, _LIST_KEYS)
    _check_outer(face_path, face)
    names = _names(face_path, face)

    keeps: dict[str, list[list[np.ndarray]]] = {}
    for setting, fname in SETTING_FILES.items():
        path = gt_dir / fname
        mat = _loadmat(path, ("event_list", "file_list", "gt_list"))
        _check_outer(path, mat)
        if _names(path, mat) != names:
            raise WiderGTError(f"{path}: event_list/file_list differ from {face_path}")
        keeps[setting] = [list(_per_event(path, mat, "gt_list", e, len(files))) for e, (_, files) in enumerate(names)]

    images = []
    for e, (event, files) in enumerate(names):
        bbx = _per_event(face_path, face, "face_bbx_list", e, len(files))
        labels = {a: _per_event(face_path, face, f"{a}_label_list", e, len(files)) for a in ATTRIBUTES}
        for j, name in enumerate(files):
            where = f"image {event}/{name}"
            boxes = bbx[j]
            if not isinstance(boxes, np.ndarray) or not (boxes.size == 0 or (boxes.ndim == 2 and boxes.shape[1] == 4)):
                raise WiderGTError(f"{face_path}: face_bbx_list of {where} must be (N, 4)")
            n = boxes.shape[0] if boxes.size else 0
            attrs = {a: np.asarray(labels[a][j]).reshape(-1) for a in ATTRIBUTES}
            for a, v in attrs.items():
                if len(v) != n:
                    raise WiderGTError(f"{face_path}: {a}_label_list of {where} has {len(v)} labels for {n} faces")
            keep = {}
            for s in SETTINGS:
                raw = np.asarray(keeps[s][e][j], dtype=np.float64).reshape(-1)
                k = raw.astype(np.int64)
                if k.size and (k.min() < 1 or k.max() > n or not np.array_equal(k, raw)):
                    raise WiderGTError(
                        f"{gt_dir / SETTING_FILES[s]}: gt_list of {where} has indices that are not integers in 1..{n}"
                    )
                keep[s] = k - 1
            try:
                images.append(GTImage(event, name, boxes.reshape(n, 4), attrs, keep))
            except ValueError as exc:
                raise WiderGTError(f"{gt_dir}: {exc}") from exc
    try:
        return WiderGT(tuple(images))
    except ValueError as exc:
        raise WiderGTError(f"{face_path}: {exc}") from exc


__all__ = [
    "ATTRIBUTES",
    "FACE_FILE",
    "GT_FILES",
    "SETTINGS",
    "SETTING_FILES",
    "GTImage",
    "WiderGT",
    "WiderGTError",
    "load_wider_gt",
]
