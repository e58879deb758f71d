"""Official WIDER FACE .mat ground truth: reading the real files, exact writer round trip, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

from core.data.wider_gt import ATTRIBUTES, FACE_FILE, GT_FILES, SETTINGS, GTImage, WiderGT, WiderGTError, load_wider_gt
from core.data.wider_gt_write import write_wider_gt
from tests.conftest import REAL_GT

needs_real_gt = pytest.mark.skipif(not (REAL_GT / FACE_FILE).exists(), reason="real WIDER val GT absent")


def assert_same_mat(a: object, b: object, where: str = "") -> None:
    """Recursive equality of loadmat output: same types, shapes, dtypes and values."""
    if isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.dtype == object and a.shape == b.shape, where
        for i, (x, y) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
            assert_same_mat(x, y, f"{where}[{i}]")
        return
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
    assert (a.dtype, a.shape) == (b.dtype, b.shape), (where, a.dtype, a.shape, b.dtype, b.shape)
    np.testing.assert_array_equal(a, b, err_msg=where)


def assert_same_gt(a: WiderGT, b: WiderGT) -> None:
    assert len(a) == len(b)
    for x, y in zip(a.images, b.images, strict=True):
        assert (x.event, x.name) == (y.event, y.name)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        for k in ATTRIBUTES:
            np.testing.assert_array_equal(x.attributes[k], y.attributes[k])
        for s in SETTINGS:
            np.testing.assert_array_equal(x.keep[s], y.keep[s])


def image(event: str, name: str, boxes, keep=None, value: int = 0) -> GTImage:
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    n = len(boxes)
    keep = keep if keep is not None else {s: np.arange(n) for s in SETTINGS}
    return GTImage(event, name, boxes, {a: np.full(n, value) for a in ATTRIBUTES}, keep)


def synthetic_images() -> list[GTImage]:
    rng = np.random.default_rng(0)
    many = rng.integers(0, 500, (300, 4))
    return [
        image("0--Parade", "p_1", [[1, 2, 3, 4], [10, 20, 30, 40]]),
        image("0--Parade", "p_2", [[5, 5, 5, 5]], keep={s: [] for s in SETTINGS}),  # one face, none kept
        image("0--Parade", "p_3", np.zeros((0, 4))),  # no faces at all
        image("1--Handshaking", "h_1", many, keep={"easy": [3], "medium": [299, 0], "hard": np.arange(300)}),
        image("1--Handshaking", "h_2", [[0, 0, -2, 7], [3, 3, 9, 9]], keep={s: [] for s in SETTINGS}, value=2),
    ]


# Real files


@needs_real_gt
def test_real_counts_and_keep_sizes() -> None:
    gt = load_wider_gt(REAL_GT)
    assert (len(gt.events), len(gt), gt.num_faces) == (61, 3226, 39708)
    totals = {s: sum(len(im.keep[s]) for im in gt.images) for s in SETTINGS}
    assert totals == {"easy": 7211, "medium": 13319, "hard": 31958}
    first = gt.images[0]
    assert (first.event, first.name, first.num_faces) == ("0--Parade", "0_Parade_marchingband_1_465", 126)
    assert first.keep["hard"].tolist() == [30, 31, 124]  # gt_list 31, 32, 125 made 0-based
    np.testing.assert_array_equal(first.boxes[0], [345, 211, 4, 4])
    assert first.boxes.dtype == np.float64 and first.attributes["blur"].dtype == np.int64
    assert max(len(im.keep["hard"]) for im in gt.images) > 255  # some lists need uint16 in the file


@needs_real_gt
def test_real_attributes_match_raw_mat() -> None:
    gt = load_wider_gt(REAL_GT)
    raw = sio.loadmat(str(REAL_GT / FACE_FILE))
    by_key = gt.index
    for e in (0, 30, 60):
        event = str(raw["event_list"][e][0][0])
        for j in (0, -1):
            name = str(raw["file_list"][e][0][j][0][0])
            im = by_key[(event, name)]
            np.testing.assert_array_equal(im.boxes, raw["face_bbx_list"][e][0][j][0])
            for a in ATTRIBUTES:
                np.testing.assert_array_equal(im.attributes[a], raw[f"{a}_label_list"][e][0][j][0].ravel())


@needs_real_gt
def test_writer_reproduces_official_files_exactly(tmp_path: Path) -> None:
    gt = load_wider_gt(REAL_GT)
    write_wider_gt(tmp_path, gt.images)
    for fname in GT_FILES:
        official, ours = sio.loadmat(str(REAL_GT / fname)), sio.loadmat(str(tmp_path / fname))
        keys = {k for k in official if not k.startswith("__")}
        assert keys == {k for k in ours if not k.startswith("__")}, fname
        for k in sorted(keys):
            assert_same_mat(official[k], ours[k], f"{fname}:{k}")
    assert_same_gt(gt, load_wider_gt(tmp_path))


# Round trip


def test_round_trip_synthetic(tmp_path: Path) -> None:
    images = synthetic_images()
    paths = write_wider_gt(tmp_path, images)
    assert sorted(paths) == sorted(GT_FILES)
    assert_same_gt(WiderGT(tuple(images)), load_wider_gt(tmp_path))
    assert_same_gt(WiderGT(tuple(images)), load_wider_gt(tmp_path / FACE_FILE))  # a file path works too


def test_written_layout_follows_official_conventions(tmp_path: Path) -> None:
    write_wider_gt(tmp_path, synthetic_images())
    face = sio.loadmat(str(tmp_path / FACE_FILE))
    hard = sio.loadmat(str(tmp_path / "wider_hard_val.mat"))
    # The official reading style of evaluation.py
    assert str(face["event_list"][1][0][0]) == "1--Handshaking"
    assert str(face["file_list"][0][0][1][0][0]) == "p_2"
    boxes = face["face_bbx_list"][0][0][0][0]
    assert boxes.dtype == np.int32 and boxes.shape == (2, 4)
    assert face["face_bbx_list"][0][0][2][0].shape == (0, 4)
    assert face["occlusion_label_list"][0][0][0][0].dtype == np.uint8
    assert face["occlusion_label_list"][0][0][0][0].shape == (2, 1)
    gt_lists = [hard["gt_list"][e][0][j][0] for e, j in ((0, 0), (0, 1), (1, 0), (1, 1))]
    assert (gt_lists[0].dtype, gt_lists[0].shape, gt_lists[0].ravel().tolist()) == (np.uint8, (2, 1), [1, 2])
    assert (gt_lists[1].dtype, gt_lists[1].shape) == (np.uint8, (0, 0))  # empty, one-face image
    assert (gt_lists[2].dtype, gt_lists[2].shape, int(gt_lists[2].max())) == (np.uint16, (300, 1), 300)
    assert (gt_lists[3].dtype, gt_lists[3].shape) == (np.uint8, (0, 1))  # empty, several faces


def test_writer_is_deterministic(tmp_path: Path) -> None:
    write_wider_gt(tmp_path / "a", synthetic_images())
    write_wider_gt(tmp_path / "b", synthetic_images())
    for fname in GT_FILES:
        assert (tmp_path / "a" / fname).read_bytes() == (tmp_path / "b" / fname).read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize(
    ("images", "match"),
    [
        ([image("e", "a", [[0.5, 0, 1, 1]])], "integers"),
        ([image("e", "a", [[0, 0, 1, 1]], value=300)], "uint8"),
        ([image("e", "a", [[0, 0, 1, 1]]), image("f", "b", []), image("e", "c", [])], "contiguous"),
        ([image("e", "a", []), image("e", "a", [])], "duplicate"),
    ],
)
def test_writer_rejects_what_would_not_round_trip(tmp_path: Path, images: list[GTImage], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_wider_gt(tmp_path, images)


def test_gt_image_validation_and_immutability() -> None:
    im = image("e", "a", [[0, 0, 1, 1]])
    with pytest.raises(ValueError):
        im.boxes[0, 0] = 5
    with pytest.raises(ValueError, match="keep"):
        image("e", "a", [[0, 0, 1, 1]], keep={s: [1] for s in SETTINGS})
    with pytest.raises(ValueError, match="attributes"):
        GTImage("e", "a", np.zeros((1, 4)), {"blur": [0]}, {s: [] for s in SETTINGS})
    with pytest.raises(ValueError, match="labels"):
        GTImage("e", "a", np.zeros((1, 4)), {a: [0, 0] for a in ATTRIBUTES}, {s: [] for s in SETTINGS})
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        GTImage("e", "a", np.zeros((2, 3)), {a: [0, 0] for a in ATTRIBUTES}, {s: [] for s in SETTINGS})


# Bad files


@pytest.fixture
def gt_dir(tmp_path: Path) -> Path:
    write_wider_gt(tmp_path / "gt", synthetic_images())
    return tmp_path / "gt"


def test_missing_file(gt_dir: Path) -> None:
    (gt_dir / "wider_medium_val.mat").unlink()
    with pytest.raises(WiderGTError, match=r"wider_medium_val\.mat: file not found"):
        load_wider_gt(gt_dir)
    with pytest.raises(WiderGTError, match="file not found"):
        load_wider_gt(gt_dir / "nowhere")


@pytest.mark.parametrize("keep", [60, 132, 0.5, -8])
def test_truncated_file(gt_dir: Path, keep: float) -> None:
    path = gt_dir / "wider_hard_val.mat"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(WiderGTError, match=r"wider_hard_val\.mat: (truncated \.mat file|not a readable MATLAB)"):
        load_wider_gt(gt_dir)


def test_garbage_file(gt_dir: Path) -> None:
    (gt_dir / FACE_FILE).write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(WiderGTError, match=r"wider_face_val\.mat: not a readable MATLAB \.mat file"):
        load_wider_gt(gt_dir)


def test_missing_key(gt_dir: Path) -> None:
    path = gt_dir / FACE_FILE
    mat = sio.loadmat(str(path))
    del mat["pose_label_list"]
    sio.savemat(str(path), {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(WiderGTError, match=r"wider_face_val\.mat: missing key\(s\) \['pose_label_list'\]"):
        load_wider_gt(gt_dir)


def test_inconsistent_files(gt_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_wider_gt(other, [image("9--Other", "x", [[0, 0, 1, 1]])])
    shutil.copy(other / "wider_easy_val.mat", gt_dir / "wider_easy_val.mat")
    with pytest.raises(WiderGTError, match=r"wider_easy_val\.mat: event_list/file_list differ"):
        load_wider_gt(gt_dir)


def test_keep_index_out_of_range(gt_dir: Path) -> None:
    path = gt_dir / "wider_hard_val.mat"
    mat = sio.loadmat(str(path))
    mat["gt_list"][0][0][0][0] = np.array([[1], [3]], dtype=np.uint8)  # image p_1 has 2 faces
    sio.savemat(str(path), {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(
        WiderGTError, match=r"wider_hard_val\.mat: gt_list of image 0--Parade/p_1 has indices that are not integers"
    ):
        load_wider_gt(gt_dir)


def test_label_count_mismatch(gt_dir: Path) -> None:
    path = gt_dir / FACE_FILE
    mat = sio.loadmat(str(path))
    mat["blur_label_list"][0][0][0][0] = np.zeros((5, 1), dtype=np.uint8)
    sio.savemat(str(path), {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(WiderGTError, match="blur_label_list of image 0--Parade/p_1 has 5 labels for 2 faces"):
        load_wider_gt(gt_dir)
