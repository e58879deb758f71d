"""Synthetic WIDERFace-layout dataset: layout, label format, .mat ground truth, determinism, safety."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio

import core.synth.generate as synth
from core.data.wider_gt import GT_FILES, load_wider_gt
from core.data.widerface import read_image_list, read_labels
from core.synth.faces import DrawnFace, draw_face, sample_style
from core.synth.generate import EASY_MIN_PX, HARD_MIN_PX, MEDIUM_MIN_PX, generate_dataset, render_image

SEED = 7
NUM_TRAIN, NUM_VAL = 60, 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 images: enough for the scale-spread check, small enough for a few seconds on 2 cores."""
    return generate_dataset(tmp_path_factory.mktemp("synth") / "ds", NUM_TRAIN, NUM_VAL, SEED)


def parse_labels(path: Path) -> dict[str, list[list[float]]]:
    """Minimal independent parser: '# path' headers, then 20-number face lines."""
    images: dict[str, list[list[float]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            current = line[2:]
            assert current not in images, f"duplicate image {current}"
            images[current] = []
        else:
            assert current is not None, "face line before the first header"
            images[current].append([float(v) for v in line.split()])
    return images


def test_layout_and_manifest(dataset: Path) -> None:
    for rel in ("train/label.txt", "val/label.txt", "val/wider_val.txt", "manifest.json"):
        assert (dataset / rel).is_file(), rel
    for name in GT_FILES:
        assert (dataset / "ground_truth" / name).is_file(), name
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["dataset"] == "synthetic" and manifest["generator"] == "core.synth.generate"
    assert manifest["version"] == 1 and manifest["seed"] == SEED
    assert manifest["counts"]["train"]["images"] == NUM_TRAIN and manifest["counts"]["val"]["images"] == NUM_VAL
    assert manifest["command"].startswith("python -m core.data.synth --out ")

    for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        labels = parse_labels(dataset / split / "label.txt")
        assert len(labels) == n
        on_disk = sorted(
            p.relative_to(dataset / split / "images").as_posix() for p in (dataset / split / "images").rglob("*")
        )
        assert sorted(p for p in on_disk if p.endswith(".jpg")) == sorted(labels)
        for rel in labels:
            event, name = rel.split("/")
            assert event.split("--")[0].isdigit() and name.startswith(event.replace("--", "_", 1) + "_")
        assert manifest["counts"][split]["faces"] == sum(len(f) for f in labels.values())
    val = parse_labels(dataset / "val" / "label.txt")
    assert [f"{e}/{n}" for e, n in read_image_list(dataset / "val" / "wider_val.txt")] == list(val)


@pytest.mark.parametrize("split", ["train", "val"])
def test_label_lines_are_valid(dataset: Path, split: str) -> None:
    labels = parse_labels(dataset / split / "label.txt")
    for rel, faces in labels.items():
        assert 1 <= len(faces) <= 15, rel
        height, width = cv2.imread(str(dataset / split / "images" / rel)).shape[:2]
        for face in faces:
            assert len(face) == 20
            x, y, w, h = face[:4]
            assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= width and y + h <= height, (rel, face)
            assert face[19] in (0.0, 1.0, 2.0)  # blur
            marks = np.array(face[4:19]).reshape(5, 3)
            if (marks == -1).all():  # absent: tiny or invalid face
                continue
            assert (marks[:, 2] == 0.0).all()
            assert (marks[:, 0] >= x).all() and (marks[:, 0] <= x + w).all(), (rel, face)
            assert (marks[:, 1] >= y).all() and (marks[:, 1] <= y + h).all(), (rel, face)
            assert h >= 16, "no landmarks on faces smaller than WIDERFace annotates them"
            assert marks[0, 0] < marks[1, 0] + 0.35 * w, "left eye is (roughly) left of right eye"
    # The project's own strict reader accepts the file as-is.
    records, issues = read_labels(dataset / split / "label.txt", on_error="fail")
    assert not issues and len(records) == len(labels)


def test_mat_ground_truth_matches_val_labels(dataset: Path) -> None:
    gt = load_wider_gt(dataset / "ground_truth")
    val = parse_labels(dataset / "val" / "label.txt")
    assert len(gt) == len(val)
    for im in gt.images:
        faces = val[f"{im.event}/{im.name}.jpg"]
        np.testing.assert_array_equal(im.boxes, np.array([f[:4] for f in faces]))
        np.testing.assert_array_equal(im.attributes["blur"], [int(f[19]) for f in faces])
    # Same cell/dtype structure as the official files as scipy reads them.
    ours = sio.loadmat(str(dataset / "ground_truth" / "wider_hard_val.mat"))
    assert {"event_list", "file_list", "face_bbx_list", "gt_list", "invalid_label_list"} <= set(ours)
    assert ours["face_bbx_list"][0, 0][0, 0].dtype == np.int32
    assert ours["occlusion_label_list"][0, 0][0, 0].dtype == np.uint8
    assert ours["file_list"][0, 0][0, 0].dtype.kind == "U"


def test_keep_lists_nested_and_follow_the_rule(dataset: Path) -> None:
    gt = load_wider_gt(dataset / "ground_truth")
    totals = dict.fromkeys(("easy", "medium", "hard"), 0)
    for im in gt.images:
        easy, medium, hard = (set(im.keep[s].tolist()) for s in ("easy", "medium", "hard"))
        assert easy <= medium <= hard
        a, h = im.attributes, im.boxes[:, 3]
        for i in range(im.num_faces):
            assert (i in hard) == (not a["invalid"][i] and h[i] >= HARD_MIN_PX)
            assert (i in medium) == (i in hard and h[i] >= MEDIUM_MIN_PX and a["occlusion"][i] < 2 and a["blur"][i] < 2)
            assert (i in easy) == (i in medium and h[i] >= EASY_MIN_PX and a["occlusion"][i] == 0)
        for s, keep in zip(totals, (easy, medium, hard), strict=True):
            totals[s] += len(keep)
    assert 0 < totals["easy"] < totals["medium"] < totals["hard"] < gt.num_faces


def test_scale_and_attribute_spread(dataset: Path) -> None:
    heights, rel = [], []
    for split in ("train", "val"):
        for path, faces in parse_labels(dataset / split / "label.txt").items():
            short = min(cv2.imread(str(dataset / split / "images" / path)).shape[:2])
            heights += [f[3] for f in faces]
            rel += [f[3] / short for f in faces]
    heights = np.array(heights)
    assert (heights <= 10).sum() >= 10, "tiny faces (WIDER hard territory) must be common"
    assert (heights >= 100).sum() >= 10 and max(rel) >= 0.5, "large faces must exist too"
    gt = load_wider_gt(dataset / "ground_truth")
    for name in ("blur", "occlusion", "pose", "illumination", "expression", "invalid"):
        values = np.concatenate([im.attributes[name] for im in gt.images])
        assert set(values.tolist()) == ({0, 1, 2} if name in ("blur", "occlusion") else {0, 1}), name


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", 4, 4, seed=3)
    b = generate_dataset(tmp_path / "b", 4, 4, seed=3)
    c = generate_dataset(tmp_path / "c", 4, 4, seed=4)
    for split in ("train", "val"):
        assert (a / split / "label.txt").read_bytes() == (b / split / "label.txt").read_bytes()
        assert (a / split / "label.txt").read_bytes() != (c / split / "label.txt").read_bytes()
    images = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert len(images) == 8
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in images)
    assert (a / "val" / "wider_val.txt").read_bytes() == (b / "val" / "wider_val.txt").read_bytes()


def test_image_does_not_depend_on_counts_or_workers(dataset: Path) -> None:
    """Image k of a split comes from (seed, split, k) alone: a smaller run is a prefix of a larger one."""
    text = (dataset / "train" / "label.txt").read_text()
    for k in range(3):
        im = render_image(SEED, "train", k)
        assert im.jpeg == (dataset / "train" / "images" / im.rel_path).read_bytes()
        block = "".join(f"{line}\n" for line in [f"# {im.rel_path}", *map(synth.face_line, im.faces)])
        assert block in text


def test_workers_give_identical_output(tmp_path: Path) -> None:
    one = generate_dataset(tmp_path / "one", 6, 4, seed=11, workers=1)
    two = generate_dataset(tmp_path / "two", 6, 4, seed=11, workers=2)
    for rel in ("train/label.txt", "val/label.txt", "val/wider_val.txt"):
        assert (one / rel).read_bytes() == (two / rel).read_bytes()
    assert all((one / p.relative_to(two)).read_bytes() == p.read_bytes() for p in two.rglob("*.jpg"))


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        generate_dataset(out, 1, 1, seed=0)
    assert synth.main(["--out", str(out), "--num-train", "1", "--num-val", "1", "--quiet"]) == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    generate_dataset(out, 1, 1, seed=0, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"], "no temp or backup dirs left behind"


def test_empty_existing_dir_is_fine_and_cli_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    assert synth.main(["--out", str(out), "--num-train", "2", "--num-val", "1", "--seed", "5", "--quiet"]) == 0
    assert "2 train / 1 val images" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["seed"] == 5


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synth.render_image

    def flaky(seed: int, split: str, index: int, *args: int) -> synth.SynthImage:
        if split == "val":
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way through
        return real(seed, split, index, *args)

    monkeypatch.setattr(synth, "render_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "ds", 2, 2, seed=0)
    assert list(tmp_path.iterdir()) == []


def _draw(size: float = 120, **changes: object) -> DrawnFace:
    """One face with every random attribute switched off except the ones given."""
    style = sample_style(np.random.default_rng(0), size)
    plain = {"blur": 0, "blur_sigma": 0.0, "obstacle": 0.0, "lower": "", "glasses": "", "light": "", "roll": 0.0}
    for key, value in {**plain, "yaw": 0.0, **changes}.items():
        setattr(style, key, value)
    return draw_face(np.zeros((300, 300, 3), np.uint8), style, 150, 150, 0.8 * size, size)


def test_attributes_come_from_the_drawing() -> None:
    plain = _draw()
    assert (plain.occlusion, plain.invalid, plain.pose, plain.illumination) == (0, 0, 0, 0)
    assert plain.landmarks is not None and abs(plain.box[3] - 120) <= 1
    assert _draw(glasses="sun").occlusion == 1
    assert _draw(lower="mask").occlusion == 2
    hidden = _draw(obstacle=1.0)
    assert hidden.occluded_fraction > 0.7 and hidden.invalid == 1 and hidden.landmarks is None
    assert _draw(roll=40.0).pose == 1 and _draw(yaw=0.8).pose == 1
    assert _draw(light="dark").illumination == 1
    assert _draw(size=12).landmarks is None and _draw(size=5).invalid == 1
    tilted = _draw(roll=40.0)
    assert tilted.box[2] > plain.box[2], "a tilted face gets the axis-aligned box around the rotated face"
