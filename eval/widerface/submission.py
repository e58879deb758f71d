"""WIDER FACE submission layout: ``<pred_dir>/<event>/<image_name>.txt``.

Each file holds the image name (without ``.jpg``) on line 1, the number of boxes on line 2, then
one ``x y w h score`` line per box, sorted by score descending. The reader checks everything the
RetinaFace ``widerface_evaluate`` script silently assumes. In strict mode the first problem raises
``PredictionFormatError`` naming the file and line. In lenient mode every problem becomes a
warning string (``path:line: message``) and is handled as follows, so the data is never silently
different from what is on disk:

====================================  ==================================================
problem                               lenient handling
====================================  ==================================================
empty file / no count line            no boxes used for that image
header name differs from file name    the file name is used
count malformed or != box lines       the box lines actually present are used
line with < 5 values or non-numbers   line dropped
line with > 5 values                  first five used (as the RetinaFace script does)
NaN/inf, negative w, h or score       line dropped
score above 1                         kept, as the script does, with a warning: the evaluator
                                      min-max normalises scores over ALL files, so one score of
                                      1e6 squeezes every other into the lowest of the 1000
                                      thresholds and AP collapses (0.44 -> 0.0015 measured)
scores not descending                 kept; the evaluator sorts (stable), the script would not
unknown event / image (gt given)      kept (still counts in score normalisation, like the
                                      script) but never matched
missing file for a gt image (gt)      image has no predictions
non-.txt entries                      ignored
====================================  ==================================================

Negative x or y are valid (boxes may start left of / above the image). Hidden entries (names
starting with '.', e.g. the writer's temp files) are skipped silently.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from core.data.wider_gt import WiderGT
from core.io.atomic import atomic_write_text
from core.io.cli_paths import read_problem

META_FILE = ".predict.json"
"""Hidden file eval.predict leaves in a prediction folder: what produced it (network, weights hash, settings)."""

Predictions: TypeAlias = dict[str, dict[str, np.ndarray]]
"""event -> image name -> (N, 5) float64 rows ``x y w h score``."""


class PredictionFormatError(ValueError):
    """A prediction directory or file does not follow the submission layout (strict mode)."""


@dataclass(frozen=True, eq=False)
class PredictionRead:
    """What ``read_predictions`` found: the boxes plus every problem met (lenient mode)."""

    predictions: Predictions
    warnings: tuple[str, ...]

    @property
    def num_warnings(self) -> int:
        return len(self.warnings)

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for imgs in self.predictions.values() for b in imgs.values())


class _Issues:
    """Raises at the first problem in strict mode, collects warnings otherwise."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.warnings: list[str] = []

    def add(self, path: Path, line: int | None, problem: str, action: str = "") -> None:
        """problem says what is wrong; action, what lenient mode does about it."""
        text = f"{path}:{line}: {problem}" if line is not None else f"{path}: {problem}"
        if self.strict:
            raise PredictionFormatError(text)
        self.warnings.append(f"{text}; {action}" if action else text)


def _empty() -> np.ndarray:
    return np.zeros((0, 5), dtype=np.float64)


def _row_problem(row: list[float]) -> str | None:
    if not all(map(math.isfinite, row)):
        return "NaN or infinite value"
    if row[2] < 0 or row[3] < 0:
        return "negative width or height"
    if row[4] < 0:
        return "negative score"
    return None


SCORE_RANGE_EFFECT = ("kept, as the reference script does; but scores are min-max normalised over all files, so "
                      "this one becomes 1.0 and every other score is divided by it: they crowd into the lowest of "
                      "the 1000 thresholds and AP collapses. Rescale the scores to [0, 1]")


def _parse_boxes(path: Path, lines: list[str], issues: _Issues) -> tuple[np.ndarray, int]:
    """Box lines (from line 3 on) -> (rows, number of non-blank box lines)."""
    rows: list[list[float]] = []
    linenos: list[int] = []
    n_lines = 0
    for lineno, line in enumerate(lines[2:], start=3):
        tokens = line.split()
        if not tokens:
            continue
        n_lines += 1
        if len(tokens) < 5:
            issues.add(path, lineno, f"expected 'x y w h score', got {len(tokens)} value(s)", "line dropped")
            continue
        try:
            values = [float(t) for t in tokens[:5]]
        except ValueError:
            issues.add(path, lineno, f"not a number in {line.strip()!r}", "line dropped")
            continue
        if len(tokens) > 5:
            issues.add(path, lineno, f"{len(tokens)} values instead of 5", "first 5 used")
        problem = _row_problem(values)
        if problem:
            issues.add(path, lineno, problem, "line dropped")
            continue
        if values[4] > 1.0:
            issues.add(path, lineno, f"score {values[4]:g} outside [0, 1]", SCORE_RANGE_EFFECT)
        rows.append(values)
        linenos.append(lineno)
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 5)
    unsorted = np.flatnonzero(np.diff(boxes[:, 4]) > 0)
    if unsorted.size:
        issues.add(path, linenos[unsorted[0] + 1], "scores are not sorted descending", "kept; the evaluator sorts them")
    return boxes, n_lines


def read_prediction_file(path: str | os.PathLike[str], strict: bool = True) -> tuple[np.ndarray, list[str]]:
    """Reads one ``<image_name>.txt``; returns ((N, 5) float64 rows, warnings)."""
    issues = _Issues(strict)
    return _read_file(Path(path), issues), issues.warnings


def _read_file(path: Path, issues: _Issues) -> np.ndarray:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        issues.add(path, None, f"cannot read file ({read_problem(exc)})", "no boxes used")
        return _empty()
    if not lines or not lines[0].strip():
        issues.add(path, 1, "empty file or missing image name", "no boxes used")
        return _empty()
    header = lines[0].strip().split("/")[-1].removesuffix(".jpg")
    if header != path.stem:
        issues.add(path, 1, f"image name {header!r} does not match the file name {path.stem!r}", "file name used")
    if len(lines) < 2:
        issues.add(path, None, "missing box count on line 2", "no boxes used")
        return _empty()
    count_text = lines[1].strip()
    count = int(count_text) if re.fullmatch(r"[0-9]+", count_text) else None
    if count is None:
        issues.add(path, 2, f"box count {count_text!r} is not a non-negative integer", "box lines used")
    boxes, n_lines = _parse_boxes(path, lines, issues)
    if count is not None and count != n_lines:
        issues.add(path, 2, f"box count says {count} but the file has {n_lines} box line(s)", "box lines used")
    return boxes


def read_predictions(
    pred_dir: str | os.PathLike[str], gt: WiderGT | None = None, strict: bool = True
) -> PredictionRead:
    """Reads a submission directory; with gt also checks for missing and unknown files."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise PredictionFormatError(f"{pred_dir}: prediction directory not found")
    issues = _Issues(strict)
    gt_events = set(gt.events) if gt is not None else set()
    predictions: Predictions = {}
    for event_dir in sorted(pred_dir.iterdir()):
        if event_dir.name.startswith("."):
            continue
        if not event_dir.is_dir():
            issues.add(event_dir, None, "not an event directory", "ignored")
            continue
        event = event_dir.name
        known_event = gt is None or event in gt_events
        if not known_event:
            issues.add(
                event_dir,
                None,
                "unknown event (not in the ground truth)",
                "kept for score normalisation, never matched",
            )
        images = predictions.setdefault(event, {})
        for path in sorted(event_dir.iterdir()):
            if path.name.startswith("."):
                continue
            if path.suffix != ".txt" or not path.is_file():
                issues.add(path, None, "not a .txt prediction file", "ignored")
                continue
            if gt is not None and known_event and (event, path.stem) not in gt.index:
                issues.add(
                    path, None, f"unknown image (not in event {event!r})", "kept for score normalisation, never matched"
                )
            images[path.stem] = _read_file(path, issues)
    if gt is not None:
        missing = [im for im in gt.images if im.name not in predictions.get(im.event, {})]
        if missing and strict:
            first = pred_dir / missing[0].event / f"{missing[0].name}.txt"
            raise PredictionFormatError(
                f"{first}: missing prediction file ({len(missing)} of {len(gt)} ground-truth images have none)"
            )
        for im in missing:
            issues.add(pred_dir / im.event / f"{im.name}.txt", None, "missing prediction file", "image has no boxes")
    return PredictionRead(predictions, tuple(issues.warnings))


def as_boxes(where: str, boxes: ArrayLike) -> np.ndarray:
    """Validates one image's predictions as (N, 5) float64 with finite values and w, h, score >= 0."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return _empty()
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"{where}: predictions must be (N, 5) x y w h score, got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 2] < 0) | (arr[:, 3] < 0) | (arr[:, 4] < 0)
    if bad.any():
        row = arr[np.argmax(bad)].tolist()
        raise ValueError(f"{where}: {_row_problem(row)} in row {row}")
    return arr


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid {kind} name {name!r} for the submission layout")


def format_prediction_file(name: str, boxes: ArrayLike) -> str:
    """File content for one image: rows sorted by score descending (stable), floats round-trip exactly."""
    arr = as_boxes(name, boxes)
    arr = arr[np.argsort(-arr[:, 4], kind="stable")]
    body = "".join(" ".join(map(repr, row)) + "\n" for row in arr.tolist())
    return f"{name}\n{len(arr)}\n{body}"


def write_predictions(pred_dir: str | os.PathLike[str], predictions: Mapping[str, Mapping[str, ArrayLike]]) -> int:
    """Writes one file per image, each atomically (temp file + os.replace); returns the file count."""
    pred_dir = Path(pred_dir)
    n = 0
    for event, images in predictions.items():
        _check_name("event", event)
        event_dir = pred_dir / event
        event_dir.mkdir(parents=True, exist_ok=True)
        for name, boxes in images.items():
            _check_name("image", name)
            atomic_write_text(event_dir / f"{name}.txt", format_prediction_file(name, boxes), fsync=False)
            n += 1
    return n


def prediction_meta(pred_dir: str | os.PathLike[str]) -> dict:
    """What eval.widerface.predict recorded about a prediction folder ({} when absent or unreadable)."""
    path = Path(pred_dir) / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
