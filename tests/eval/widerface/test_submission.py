"""Submission layout <pred_dir>/<event>/<image>.txt: round trip, strict errors, lenient warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data.wider_gt import ATTRIBUTES, SETTINGS, GTImage, WiderGT
from eval.widerface.submission import (
    PredictionFormatError,
    format_prediction_file,
    read_prediction_file,
    read_predictions,
    write_predictions,
)


def gt_image(event: str, name: str) -> GTImage:
    return GTImage(event, name, np.array([[0.0, 0, 10, 10]]), {a: [0] for a in ATTRIBUTES}, {s: [0] for s in SETTINGS})


GT = WiderGT((gt_image("0--Parade", "p_1"), gt_image("0--Parade", "p_2"), gt_image("1--Handshaking", "h_1")))


def sample() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "0--Parade": {
            "p_1": np.hstack([rng.uniform(-5, 500, (7, 2)), rng.uniform(0, 90, (7, 2)), rng.random((7, 1))]),
            "p_2": np.zeros((0, 5)),
        },
        "1--Handshaking": {"h_1": np.array([[1.0, 2.0, 3.0, 4.0, 0.1 + 0.2]])},
    }


def write_raw(root: Path, event: str, name: str, text: str) -> Path:
    path = root / event / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_round_trip_exact_and_sorted(tmp_path: Path) -> None:
    preds = sample()
    assert write_predictions(tmp_path, preds) == 3
    read = read_predictions(tmp_path, GT)
    assert read.warnings == () and read.num_boxes == 8
    for event, images in preds.items():
        assert set(read.predictions[event]) == set(images)
        for name, boxes in images.items():
            expected = boxes[np.argsort(-boxes[:, 4], kind="stable")]
            np.testing.assert_array_equal(read.predictions[event][name], expected)  # bit-exact floats
    lines = (tmp_path / "0--Parade" / "p_1.txt").read_text().splitlines()
    assert lines[0] == "p_1" and lines[1] == "7" and len(lines) == 9
    assert not list(tmp_path.rglob(".*"))  # no temp files left behind


def test_writer_keeps_tie_order_and_overwrites(tmp_path: Path) -> None:
    boxes = np.array([[1, 1, 1, 1, 0.5], [2, 2, 2, 2, 0.9], [3, 3, 3, 3, 0.5]], dtype=float)
    assert format_prediction_file("x", boxes).splitlines()[2:] == [
        "2.0 2.0 2.0 2.0 0.9",
        "1.0 1.0 1.0 1.0 0.5",
        "3.0 3.0 3.0 3.0 0.5",
    ]
    write_predictions(tmp_path, {"e": {"x": boxes}})
    write_predictions(tmp_path, {"e": {"x": boxes[:1]}})
    assert read_predictions(tmp_path).predictions["e"]["x"].shape == (1, 5)


@pytest.mark.parametrize(
    "boxes",
    [np.array([[0, 0, 1, 1, np.nan]]), np.array([[0, 0, -1, 1, 0.5]]), np.array([[0, 0, 1, 1, -0.5]]), np.ones((2, 4))],
)
def test_writer_rejects_bad_boxes(tmp_path: Path, boxes: np.ndarray) -> None:
    with pytest.raises(ValueError, match="e/x|x:"):
        write_predictions(tmp_path, {"e": {"x": boxes}})


@pytest.mark.parametrize("name", ["", "a/b", ".hidden"])
def test_writer_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        write_predictions(tmp_path, {"e": {name: np.zeros((0, 5))}})


def test_negative_xy_and_jpg_header_are_fine(tmp_path: Path) -> None:
    path = write_raw(tmp_path, "e", "img", "e/img.jpg\n1\n-3.5 -2 10 10 0.7\n\n")
    boxes, warnings = read_prediction_file(path)
    assert warnings == [] and boxes.tolist() == [[-3.5, -2.0, 10.0, 10.0, 0.7]]


# Each case: file text, line number named in the error, message fragment, rows kept in lenient mode.
BAD_FILES = {
    "malformed_line": ("img\n2\n1 2 3 4 0.9\n1 2 three 4 0.5\n", 4, "not a number", 1),
    "short_line": ("img\n2\n1 2 3 4 0.9\n1 2 3 4\n", 4, "got 4 value", 1),
    "count_mismatch": ("img\n3\n1 2 3 4 0.9\n1 2 3 4 0.5\n", 2, "box count says 3", 2),
    "count_not_int": ("img\nmany\n1 2 3 4 0.9\n", 2, "not a non-negative integer", 1),
    "nan": ("img\n2\n1 2 3 4 nan\n1 2 3 4 0.5\n", 3, "NaN", 1),
    "negative_size": ("img\n2\n1 2 -3 4 0.9\n1 2 3 4 0.5\n", 3, "negative width", 1),
    "negative_score": ("img\n1\n1 2 3 4 -0.1\n", 3, "negative score", 0),
    "score_above_one": ("img\n2\n1 2 3 4 1e6\n1 2 3 4 0.5\n", 3, "06 outside", 2),
    "unsorted": ("img\n2\n1 2 3 4 0.5\n1 2 3 4 0.9\n", 4, "not sorted", 2),
    "header_mismatch": ("other\n1\n1 2 3 4 0.9\n", 1, "does not match the file name", 1),
    "extra_columns": ("img\n1\n1 2 3 4 0.9 7 7\n", 3, "7 values instead of 5", 1),
    "empty": ("", 1, "empty file", 0),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_strict_names_file_and_line(tmp_path: Path, case: str) -> None:
    text, line, fragment, _ = BAD_FILES[case]
    path = write_raw(tmp_path, "e", "img", text)
    with pytest.raises(PredictionFormatError, match=rf"img\.txt:{line}: .*{fragment}"):
        read_predictions(tmp_path)
    with pytest.raises(PredictionFormatError, match=str(path)):
        read_prediction_file(path, strict=True)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_lenient_warns_and_keeps_valid_rows(tmp_path: Path, case: str) -> None:
    text, line, fragment, kept = BAD_FILES[case]
    write_raw(tmp_path, "e", "img", text)
    read = read_predictions(tmp_path, strict=False)
    assert read.num_warnings >= 1
    assert any(f"img.txt:{line}: " in w and fragment in w for w in read.warnings), read.warnings
    assert all("; " in w for w in read.warnings)  # each warning says what lenient mode did
    assert read.predictions["e"]["img"].shape == (kept, 5)


def test_missing_files(tmp_path: Path) -> None:
    write_predictions(tmp_path, {"0--Parade": {"p_1": np.zeros((0, 5))}})
    with pytest.raises(PredictionFormatError, match=r"p_2\.txt: missing prediction file \(2 of 3"):
        read_predictions(tmp_path, GT)
    read = read_predictions(tmp_path, GT, strict=False)
    assert read.num_warnings == 2 and all("missing prediction file" in w for w in read.warnings)
    assert "p_2" not in read.predictions["0--Parade"]


def test_unknown_event_and_image(tmp_path: Path) -> None:
    preds = sample()
    preds["0--Parade"]["stray"] = np.array([[1.0, 1, 1, 1, 0.3]])
    write_predictions(tmp_path, preds)
    with pytest.raises(PredictionFormatError, match=r"stray\.txt: unknown image"):
        read_predictions(tmp_path, GT)
    read = read_predictions(tmp_path, GT, strict=False)
    assert read.num_warnings == 1 and "stray" in read.predictions["0--Parade"]  # kept: it counts in normalisation

    (tmp_path / "0--Parade" / "stray.txt").unlink()
    write_predictions(tmp_path, {"77--Nope": {"z": np.zeros((0, 5))}})
    with pytest.raises(PredictionFormatError, match=r"77--Nope: unknown event"):
        read_predictions(tmp_path, GT)
    assert read_predictions(tmp_path).warnings == ()  # without gt nothing is unknown


def test_stray_entries(tmp_path: Path) -> None:
    write_predictions(tmp_path, sample())
    (tmp_path / "notes.md").write_text("hi")
    (tmp_path / "0--Parade" / "p_1.json").write_text("{}")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "0--Parade" / ".p_1.txt.abc.tmp").write_text("partial")
    with pytest.raises(PredictionFormatError, match=r"p_1\.json: not a \.txt prediction file$"):
        read_predictions(tmp_path, GT)
    read = read_predictions(tmp_path, GT, strict=False)
    assert read.num_warnings == 2 and read.num_boxes == 8


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PredictionFormatError, match="prediction directory not found"):
        read_predictions(tmp_path / "absent", strict=False)
