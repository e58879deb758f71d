"""WIDERFace label reader for the RetinaFace ``label.txt`` layout.

Layout (the one every RetinaFace implementation uses)::

    <root>/train/images/<event>/<img>.jpg   <root>/train/label.txt
    <root>/val/images/<event>/<img>.jpg     <root>/val/label.txt (optional)
                                            <root>/val/wider_val.txt

``label.txt``: a line ``# <relative path>`` starts an image; every following line is one face,
either ``x y w h`` (4 numbers, RetinaFace's val file) or
``x y w h lx0 ly0 f0 ... lx4 ly4 f4 blur`` (20 numbers; a whole landmark group of -1 means
"no landmarks"). Boxes come back as xyxy pixels with ``x2 = x + w``.

Bad input is never turned into a silently wrong label: every problem is a :class:`LabelIssue`
naming the file and line, and the caller picks the policy -- ``on_error="fail"`` raises
:class:`LabelFormatError` at the first problem, ``on_error="skip"`` drops the bad face (or image)
and returns the issues so the caller can print a counted warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

OnError = Literal["fail", "skip"]

NUM_LANDMARKS = 5
# Column indices of the 10 landmark coordinates in a 20-number face line (every third value
# after the box is a visibility flag we do not use; the last value is blur).
_LANDMARK_COLUMNS = [4, 5, 7, 8, 10, 11, 13, 14, 16, 17]
_ABSENT_TAIL = [-1.0] * 16
_VALID_COUNTS = (4, 20)


@dataclass(frozen=True)
class LabelIssue:
    """One problem found in a label/list file, located precisely so it can be fixed."""

    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class LabelFormatError(ValueError):
    """Raised by ``on_error="fail"``; carries the :class:`LabelIssue` that stopped reading."""

    def __init__(self, issue: LabelIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """Faces of one image. Arrays are read-only so a shared record cannot be corrupted.

    ``line`` is the 1-based line of the ``#`` header and ``face_lines`` the line of each face,
    so later stages (missing/corrupt image, box outside the image) can still point at the file.
    """

    path: str  # relative to <root>/<split>/images, exactly as written in label.txt
    line: int
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2, pixels
    landmarks: np.ndarray  # (N, 10) float32 x0 y0 ... x4 y4, -1 where absent
    has_landmarks: np.ndarray  # (N,) bool
    face_lines: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.boxes)

    def to_targets(self) -> np.ndarray:
        """(N, 15) float32 pixel targets in RetinaFace's layout: box, 10 landmarks, label.

        label is 1.0 with landmarks and -1.0 without (the loss uses landmarks only where > 0).
        """
        label = np.where(self.has_landmarks, 1.0, -1.0).astype(np.float32)[:, None]
        return np.hstack([self.boxes, self.landmarks, label]).astype(np.float32)


def _check_policy(on_error: str) -> None:
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _make_record(path: str, line: int, faces: list[list[float]], lines: list[int]) -> ImageRecord:
    # 4-number faces are padded with an absent landmark group so one array op handles both.
    rows = [values if len(values) == 20 else values + _ABSENT_TAIL for values in faces]
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 20)
    boxes = table[:, :4].copy()
    boxes[:, 2:] += boxes[:, :2]
    landmarks = table[:, _LANDMARK_COLUMNS]
    has_landmarks = (landmarks != -1.0).any(axis=1)
    return ImageRecord(
        path=path,
        line=line,
        boxes=_frozen(boxes.astype(np.float32)),
        landmarks=_frozen(landmarks.astype(np.float32)),
        has_landmarks=_frozen(has_landmarks),
        face_lines=_frozen(np.asarray(lines, dtype=np.int64)),
    )


def _parse_face(parts: list[str]) -> tuple[list[float] | None, str]:
    """Return (values, "") for a valid face line, else (None, reason)."""
    if len(parts) not in _VALID_COUNTS:
        return None, f"expected 4 or 20 numbers per face line, got {len(parts)}"
    try:
        values = list(map(float, parts))
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        return None, f"not a number: {bad!r}"
    if not all(map(math.isfinite, values)):
        return None, "NaN or infinite value"
    w, h = values[2], values[3]
    if w < 0 or h < 0:
        return None, f"negative box size w={w:g} h={h:g}"
    if w == 0 or h == 0:
        return None, f"zero-size box w={w:g} h={h:g}"
    if len(values) == 20:
        n_absent = values[4:17:3].count(-1.0) + values[5:18:3].count(-1.0)
        if 0 < n_absent < 10:
            # Only a whole group of -1 means "absent"; a partial group is ambiguous.
            return None, "landmark group partly -1 (expected all ten coordinates or none)"
    return values, ""


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_labels(label_file: Path | str, on_error: OnError = "fail") -> tuple[list[ImageRecord], list[LabelIssue]]:
    """Read a RetinaFace ``label.txt``.

    Returns ``(records, issues)``; ``issues`` is always empty with ``on_error="fail"`` because
    the first problem raises :class:`LabelFormatError`. With ``"skip"`` a bad face line is
    dropped, and an image whose faces were *all* bad is dropped too -- kept, it would train as
    a face-free (pure background) image, which is a wrong label. Images listed with no face
    lines at all are kept as genuine negatives.
    """
    _check_policy(on_error)
    label_file = Path(label_file)
    with open(label_file, encoding="utf-8-sig") as handle:
        text = handle.read()

    records: list[ImageRecord] = []
    issues: list[LabelIssue] = []

    def report(line: int, message: str) -> None:
        issue = LabelIssue(label_file, line, message)
        if on_error == "fail":
            raise LabelFormatError(issue)
        issues.append(issue)

    path: str | None = None  # current image; None before the first valid header
    header_line = 0
    header_ok = False
    faces: list[list[float]] = []
    lines: list[int] = []
    n_dropped = 0

    def flush() -> None:
        if path is None:
            return
        if n_dropped and not faces:
            report(header_line, f"image {path!r} dropped: all {n_dropped} face line(s) were invalid")
            return
        records.append(_make_record(path, header_line, faces, lines))

    for number, raw in enumerate(text.splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if parts[0].startswith("#"):
            flush()
            path, header_line, faces, lines, n_dropped = None, number, [], [], 0
            header_ok = False
            fields = raw.strip()[1:].split()
            if not fields:
                report(number, "image header '#' without a path")
            elif len(fields) > 1:
                report(
                    number,
                    f"image header has extra fields {fields[1:]}; expected '# <relative path>' "
                    "(the insightface/SCRFD '# path width height' format with xyxy boxes is not supported)",
                )
            else:
                path, header_ok = fields[0], True
            continue
        if not header_ok:
            if header_line == 0:
                report(number, "face line before any '# <image path>' line")
            else:
                report(number, f"face line belongs to the invalid image header on line {header_line}")
            continue
        values, reason = _parse_face(parts)
        if values is None:
            report(number, reason)
            n_dropped += 1
            continue
        faces.append(values)
        lines.append(number)
    flush()
    return records, issues


def check_images_exist(
    images_dir: Path | str,
    records: list[ImageRecord],
    label_file: Path | str,
    on_error: OnError = "fail",
) -> tuple[list[ImageRecord], list[LabelIssue]]:
    """Keep the records whose image file exists under ``images_dir``.

    A missing image is reported at the ``#`` header line of ``label_file`` that names it, so a
    typo in the label file and a half-extracted dataset are told apart quickly.
    """
    _check_policy(on_error)
    images_dir = Path(images_dir)
    kept: list[ImageRecord] = []
    issues: list[LabelIssue] = []
    for record in records:
        image_path = images_dir / record.path
        if image_path.is_file():
            kept.append(record)
            continue
        issue = LabelIssue(Path(label_file), record.line, f"image not found: {image_path}")
        if on_error == "fail":
            raise LabelFormatError(issue)
        issues.append(issue)
    return kept, issues


def read_image_list(wider_val_txt: Path | str) -> list[tuple[str, str]]:
    """Read ``wider_val.txt`` (lines ``/<event>/<img>.jpg``) into ``(event, image_name)`` pairs.

    ``image_name`` keeps its extension. Always strict: a list file is small and hand-made, and a
    wrong entry would silently shrink the evaluation set.
    """
    list_file = Path(wider_val_txt)
    with open(list_file, encoding="utf-8-sig") as handle:
        text = handle.read()
    entries: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        pieces = line.strip("/").split("/")
        if len(pieces) != 2 or not all(pieces) or any(p.strip() != p or " " in p for p in pieces):
            message = f"expected '/<event>/<image>.jpg', got {line!r}"
            raise LabelFormatError(LabelIssue(list_file, number, message))
        entries.append((pieces[0], pieces[1]))
    return entries


def format_issues(issues: list[LabelIssue], limit: int = 5) -> str:
    """A counted one-paragraph summary for warnings: total, then the first ``limit`` issues."""
    if not issues:
        return "no label issues"
    head = "\n".join(f"  {issue}" for issue in issues[:limit])
    more = f"\n  ... and {len(issues) - limit} more" if len(issues) > limit else ""
    return f"{len(issues)} label issue(s) skipped:\n{head}{more}"
