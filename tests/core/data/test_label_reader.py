"""WIDERFace label reader: good files, every malformed-line case, skip policy, missing images."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data import widerface
from core.data.widerface import (
    LabelFormatError,
    LabelIssue,
    check_images_exist,
    format_issues,
    read_image_list,
    read_labels,
)

FACE20 = (
    "449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 "
    "485.174 425.893 0.0 538.357 431.491 0.0 0.82"
)
NO_LMK20 = "78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 0.2"
FACE4 = "10 20 30 40"


def write(tmp_path: Path, lines: list[str], name: str = "label.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_20_and_4_number_lines(tmp_path: Path) -> None:
    label = write(
        tmp_path,
        ["# 0--Parade/a.jpg", FACE20, NO_LMK20, ""]
        + ["# 1--Handshaking/b.jpg", FACE4, "  5.5 6 7.25 8  ", "# 2--Demo/empty.jpg"],
    )
    records, issues = read_labels(label)
    assert issues == []
    assert [r.path for r in records] == ["0--Parade/a.jpg", "1--Handshaking/b.jpg", "2--Demo/empty.jpg"]
    assert [r.line for r in records] == [1, 5, 8]

    a, b, empty = records
    assert a.boxes.dtype == np.float32 and a.boxes.shape == (2, 4)
    np.testing.assert_allclose(a.boxes, [[449, 330, 571, 479], [78, 221, 85, 229]])
    assert a.landmarks.dtype == np.float32 and a.landmarks.shape == (2, 10)
    np.testing.assert_allclose(
        a.landmarks[0], [488.906, 373.643, 542.089, 376.442, 515.031, 412.83, 485.174, 425.893, 538.357, 431.491]
    )
    np.testing.assert_array_equal(a.landmarks[1], -1.0)
    np.testing.assert_array_equal(a.has_landmarks, [True, False])
    np.testing.assert_array_equal(a.face_lines, [2, 3])

    np.testing.assert_allclose(b.boxes, [[10, 20, 40, 60], [5.5, 6, 12.75, 14]])
    np.testing.assert_array_equal(b.landmarks, -1.0)
    np.testing.assert_array_equal(b.has_landmarks, [False, False])

    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 10)


def test_records_are_immutable_and_give_retinaface_targets(tmp_path: Path) -> None:
    (record,), _ = read_labels(write(tmp_path, ["# e/a.jpg", FACE20, NO_LMK20]))
    with pytest.raises(ValueError):
        record.boxes[0, 0] = 0.0
    targets = record.to_targets()
    assert targets.shape == (2, 15) and targets.dtype == np.float32
    np.testing.assert_allclose(targets[:, :4], record.boxes)
    np.testing.assert_allclose(targets[:, 4:14], record.landmarks)
    np.testing.assert_array_equal(targets[:, 14], [1.0, -1.0])


def test_windows_line_endings_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "label.txt"
    path.write_bytes(("\ufeff# e/a.jpg\r\n" + FACE4 + "\r\n").encode("utf-8"))
    (record,), _ = read_labels(path)
    assert record.path == "e/a.jpg"
    np.testing.assert_allclose(record.boxes, [[10, 20, 40, 60]])


MALFORMED = [
    pytest.param(["# e/a.jpg", FACE4, "1 2 3 4 5"], 3, "expected 4 or 20 numbers", id="wrong-count"),
    pytest.param(["# e/a.jpg", "1 2 three 4"], 2, "not a number: 'three'", id="not-a-number"),
    pytest.param(["# e/a.jpg", FACE4, "1 2 nan 4"], 3, "NaN", id="nan"),
    pytest.param(["# e/a.jpg", "1 2 inf 4"], 2, "infinite", id="inf"),
    pytest.param(["", FACE4, "# e/a.jpg"], 2, "before any '# <image path>'", id="face-before-header"),
    pytest.param(["# e/a.jpg", FACE4, "# e/b.jpg", "1 2 -3 4"], 4, "negative box size", id="negative-w"),
    pytest.param(["# e/a.jpg", "1 2 3 -4"], 2, "negative box size", id="negative-h"),
    pytest.param(["# e/a.jpg", "1 2 0 4"], 2, "zero-size box", id="zero-w"),
    pytest.param(["# e/a.jpg", FACE4, FACE4, "1 2 3 0"], 4, "zero-size box", id="zero-h"),
    pytest.param(["# e/a.jpg", FACE20.replace("488.906", "-1.0")], 2, "partly -1", id="partial-landmarks"),
    pytest.param(["# e/a.jpg 1024 768", FACE4], 1, "extra fields", id="scrfd-header"),
    pytest.param(["# e/a.jpg", FACE4, "#", FACE4], 3, "without a path", id="empty-header"),
]


@pytest.mark.parametrize(("lines", "line", "fragment"), MALFORMED)
def test_fail_policy_names_file_and_line(tmp_path: Path, lines: list[str], line: int, fragment: str) -> None:
    label = write(tmp_path, lines)
    with pytest.raises(LabelFormatError) as caught:
        read_labels(label, on_error="fail")
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{label}:{line}: ")
    assert fragment in str(error)
    assert error.issue == LabelIssue(label, line, error.issue.message)


def test_skip_policy_drops_exactly_the_bad_faces(tmp_path: Path) -> None:
    label = write(
        tmp_path,
        [
            "0 0 5 5",  # 1: face before any header
            "# e/a.jpg",  # 2
            FACE20,  # 3 kept
            "1 2 x 4",  # 4 bad
            NO_LMK20,  # 5 kept
            "1 2 3",  # 6 bad
            "# e/all_bad.jpg",  # 7 -> image dropped, it would otherwise look face-free
            "1 2 0 4",  # 8 bad
            "# e/b.jpg",  # 9
            "1 2 -3 4",  # 10 bad
            FACE4,  # 11 kept
            "# e/no_faces.jpg",  # 12 kept: listed with no faces on purpose
            "# e/c.jpg 1 2",  # 13 bad header
            FACE4,  # 14 orphaned by the bad header
        ],
    )
    records, issues = read_labels(label, on_error="skip")
    assert [r.path for r in records] == ["e/a.jpg", "e/b.jpg", "e/no_faces.jpg"]
    a, b, no_faces = records
    np.testing.assert_array_equal(a.face_lines, [3, 5])
    np.testing.assert_allclose(a.boxes, [[449, 330, 571, 479], [78, 221, 85, 229]])
    np.testing.assert_array_equal(a.has_landmarks, [True, False])
    np.testing.assert_array_equal(b.face_lines, [11])
    assert len(no_faces) == 0

    assert sorted(issue.line for issue in issues) == [1, 4, 6, 7, 8, 10, 13, 14]
    assert all(issue.file == label for issue in issues)
    dropped = next(issue for issue in issues if issue.line == 7)
    assert "e/all_bad.jpg" in dropped.message and "dropped" in dropped.message
    summary = format_issues(issues, limit=3)
    assert summary.startswith("8 label issue(s) skipped") and "... and 5 more" in summary


def test_bad_policy_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_error"):
        read_labels(write(tmp_path, ["# e/a.jpg"]), on_error="ignore")  # type: ignore[arg-type]


def test_missing_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "e").mkdir(parents=True)
    (images / "e" / "a.jpg").write_bytes(b"present")
    label = write(tmp_path, ["# e/a.jpg", FACE4, "# e/missing.jpg", FACE4, "# e/gone.jpg"])
    records, _ = read_labels(label)

    with pytest.raises(LabelFormatError, match=rf"^{re.escape(str(label))}:3: image not found: .*e/missing\.jpg"):
        check_images_exist(images, records, label, on_error="fail")

    kept, issues = check_images_exist(images, records, label, on_error="skip")
    assert [r.path for r in kept] == ["e/a.jpg"]
    assert [(i.line, Path(i.message.split(": ", 1)[1]).name) for i in issues] == [(3, "missing.jpg"), (5, "gone.jpg")]


def test_read_image_list(tmp_path: Path) -> None:
    listing = write(tmp_path, ["/0--Parade/0_Parade_1.jpg", "", "/1--Handshaking/1_x.jpg  "], "wider_val.txt")
    assert read_image_list(listing) == [("0--Parade", "0_Parade_1.jpg"), ("1--Handshaking", "1_x.jpg")]

    bad = write(tmp_path, ["/0--Parade/a.jpg", "/just_a_name.jpg"], "bad_val.txt")
    with pytest.raises(LabelFormatError, match=rf"^{re.escape(str(bad))}:2: expected '/<event>/<image>.jpg'"):
        read_image_list(bad)


def parade_label(tmp_path: Path, images: int) -> Path:
    """``images`` identical blocks of a header and nine face lines (10 lines per image)."""
    lines: list[str] = []
    for image in range(images):
        lines.append(f"# 0--Parade/img_{image}.jpg")
        lines.extend([FACE20, NO_LMK20, FACE20, FACE4, FACE20, NO_LMK20, FACE20, FACE20, FACE20])
    return write(tmp_path, lines, f"label_{images}.txt")


def executed_python_lines(label: Path) -> int:
    """Python lines run by ``read_labels`` (any module): a deterministic measure of its work."""
    count = 0

    def tracer(frame: object, event: str, arg: object) -> object:
        nonlocal count
        count += event == "line"
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        records, _ = read_labels(label)
    finally:
        sys.settrace(previous)
    assert sum(len(r) for r in records) == 9 * len(records)
    return count


def test_reading_is_linear_in_the_file_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work, not wall-clock time (speed: benchmarks/bench_label_reader.py): every face line is parsed
    once, every image built once, and each extra image costs exactly the same number of lines."""
    calls = {"parse": 0, "record": 0}
    for name, key in (("_parse_face", "parse"), ("_make_record", "record")):
        original = getattr(widerface, name)

        def counted(*args: object, _original=original, _key=key) -> object:
            calls[_key] += 1
            return _original(*args)

        monkeypatch.setattr(widerface, name, counted)
    records, _ = read_labels(parade_label(tmp_path, 1000))
    assert len(records) == 1000 and sum(len(r) for r in records) == 9000
    assert calls == {"parse": 9000, "record": 1000}
    monkeypatch.undo()

    small, medium, large = (executed_python_lines(parade_label(tmp_path, n)) for n in (100, 200, 400))
    assert large - medium == 2 * (medium - small), (small, medium, large)
