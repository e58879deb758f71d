"""eval.detect: faces on any photo with any checkpoint the app accepts; bad files skipped by name."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from core.checkpoint import save_checkpoint
from core.factory import build_model
from core.io.image_io import decode_upload
from core.nets.ssh import FusedDeformSSH
from eval.attention.drawing import level_masks
from eval.deploy.bn_fold import prepare_for_inference
from eval.detect import CSV_NAME, JSON_NAME, MASKS_DIR, OVERLAY_SIDE, detect_one, main, output_names
from eval.runs.checkpoints import load_checkpoint_file
from tests.conftest import ROOT, exit_status, randomize_batchnorm

SAMPLES = ROOT / "assets" / "samples"
REFERENCE_RETINAFACE = [ROOT / "assets" / "reference" / "retinaface_mnet.pth",
                        ROOT.parent / "shared" / "reference" / "retinaface_mnet" / "mobilenet0.25_Final.pth",
                        Path("/work/shared/reference/retinaface_mnet/mobilenet0.25_Final.pth")]


@pytest.fixture(scope="module")
def real_retinaface(tmp_path_factory) -> Path:
    """The published RetinaFace weights in this project's format: the shipped converted file when present,
    else converted here from the reference file."""
    for path in REFERENCE_RETINAFACE:
        if path.is_file() and path.parent.name != "retinaface_mnet":
            return path
        if path.is_file():
            from eval.deploy.import_retinaface import import_retinaface

            out = tmp_path_factory.mktemp("ref") / "retinaface_mnet.pth"
            import_retinaface(path, out)
            return out
    pytest.skip("no published RetinaFace weights (assets/reference or ../shared/reference)")


@pytest.fixture(scope="module")
def parallel_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "par.pth"
    save_checkpoint(path, randomize_batchnorm(build_model("eca_cbam_parallel").eval()), dataset="synthetic",
                    run_name="par_s0")
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` with a few bytes of pixel data: a decompression-bomb stand-in."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_real_weights_on_the_samples_write_drawn_photos_and_one_detections_file(real_retinaface, tmp_path):
    out = tmp_path / "det"
    assert main(["--weights", str(real_retinaface), "--images", str(SAMPLES), "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / JSON_NAME).read_text())
    assert report["model"] == "retinaface_mnet" and "Pytorch_Retinaface" in report["origin"]
    assert report["settings"]["conf"] == 0.5 and not report["skipped"]
    model, _, _ = load_checkpoint_file(real_retinaface)
    samples = sorted(SAMPLES.glob("*.png"))
    assert [Path(i["image"]).name for i in report["images"]] == [p.name for p in samples]
    for entry, path in zip(report["images"], samples, strict=True):
        rgb = decode_upload(path.read_bytes(), path.name)
        expected = model.detect(rgb, 0.5, 0.4)
        assert len(entry["faces"]) == len(expected) > 0  # the real model finds the faces of both samples
        np.testing.assert_allclose([f["box"] for f in entry["faces"]], expected.boxes, atol=0.01)
        assert min(f["score"] for f in entry["faces"]) >= 0.5
        drawn = cv2.imread(str(out / f"{path.stem}.jpg"))
        assert drawn.shape == rgb.shape and not np.array_equal(drawn[..., ::-1], rgb)  # boxes drawn on it
    table = pd.read_csv(out / CSV_NAME)
    assert len(table) == sum(len(i["faces"]) for i in report["images"])
    assert set(table["model"]) == {"retinaface_mnet"} and table["lm5_y"].notna().all()


def test_bad_files_are_skipped_by_name_and_the_rest_go_on(parallel_ckpt, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "good.png"), np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8))
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.txt").write_text("not an image")
    (photos / "bomb.png").write_bytes(_png_header_only(10_000, 5_000))
    good = (photos / "good.png").read_bytes()
    (photos / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "det"
    code = main(["--weights", str(parallel_ckpt), "--images", str(photos), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    skipped = {Path(s["image"]).name: s["reason"] for s in json.loads((out / JSON_NAME).read_text())["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "notes.txt", "bomb.png", "truncated.png"}
    assert "unsupported file type .txt" in skipped["notes.txt"] and "pixel limit" in skipped["bomb.png"]
    assert "truncated" in skipped["truncated.png"]
    for name in skipped:
        assert f"skipped {photos / name}:" in err and "Traceback" not in err
    assert (out / "good.jpg").is_file() and not (out / "corrupt.jpg").exists()


def test_masks_give_one_overlay_per_level_and_mask_as_the_heatmaps_page(parallel_ckpt, tmp_path):
    photo = SAMPLES / "astronaut.png"
    out = tmp_path / "det"
    assert main(["--weights", str(parallel_ckpt), "--image", str(photo), "--out", str(out), "--masks",
                 "--conf", "0.3", "--no-progress"]) == 0
    report = json.loads((out / JSON_NAME).read_text())
    assert report["trained_on"] == "synthetic" and "NOT WIDERFace" in report["trained_on_label"]
    files = sorted((out / MASKS_DIR / "astronaut").glob("*.jpg"))
    assert len(files) == 12 and len(report["images"][0]["masks"]) == 12
    assert {f.stem for f in files} == {f"{lv}_{k}" for lv in ("stage1", "stage2", "stage3", "P3", "P4", "P5")
                                       for k in ("spatial", "hybrid")}
    assert max(cv2.imread(str(files[0])).shape[:2]) <= OVERLAY_SIDE
    # The overlay's colours follow the mask of that level: its hottest pixel is where the mask peaks.
    model, _, _ = load_checkpoint_file(parallel_ckpt)
    rgb = decode_upload(photo.read_bytes(), photo.name)
    _, maps = detect_one(model, rgb, 0.3, 0.4, masks=True)
    mask = level_masks(maps, "P5")["hybrid"]
    overlay = cv2.imread(str(out / MASKS_DIR / "astronaut" / "P5_hybrid.jpg")).astype(np.float32)
    hot = overlay[..., 2] - overlay[..., 0]  # jet: red minus blue grows with the mask
    peak = np.unravel_index(np.argmax(mask), mask.shape)
    cell = (overlay.shape[0] // mask.shape[0], overlay.shape[1] // mask.shape[1])
    low = np.unravel_index(np.argmin(mask), mask.shape)
    block = lambda p: hot[p[0] * cell[0]:(p[0] + 1) * cell[0], p[1] * cell[1]:(p[1] + 1) * cell[1]].mean()  # noqa: E731
    assert block(peak) > block(low)


def test_masks_on_a_model_without_attention_say_so(real_retinaface, tmp_path, capsys):
    out = tmp_path / "det"
    assert main(["--weights", str(real_retinaface), "--image", str(SAMPLES / "camera.png"), "--out", str(out),
                 "--masks", "--no-progress"]) == 0
    assert "retinaface_mnet has no attention blocks" in capsys.readouterr().err
    assert not (out / MASKS_DIR).exists()
    assert json.loads((out / JSON_NAME).read_text())["masks"].startswith("none:")


def test_resize_long_reports_boxes_in_the_photos_own_pixels(parallel_ckpt):
    model, _, _ = load_checkpoint_file(parallel_ckpt)
    rgb = decode_upload((SAMPLES / "astronaut.png").read_bytes(), "a.png")
    small = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA)
    direct = model.detect(small, 0.05, 0.4)
    dets, _ = detect_one(model, rgb, 0.05, 0.4, resize_long=256)
    assert len(dets) == len(direct) > 0
    np.testing.assert_allclose(dets.boxes, direct.boxes * 2, rtol=1e-5)


def test_the_fused_inference_copy_finds_the_plain_models_faces(parallel_ckpt):
    """eval.detect's PyTorch forward is the inference copy (fused deformable SSH): same detections."""
    model, _, _ = load_checkpoint_file(parallel_ckpt)
    rgb = decode_upload((SAMPLES / "astronaut.png").read_bytes(), "a.png")
    plain, _ = detect_one(model, rgb, 0.05, 0.4, resize_long=256)
    fused, _ = detect_one(model, rgb, 0.05, 0.4, resize_long=256, fast=prepare_for_inference(model))
    assert any(isinstance(m, FusedDeformSSH) for m in prepare_for_inference(model).modules())
    assert len(fused) == len(plain) > 0
    np.testing.assert_allclose(fused.boxes, plain.boxes, atol=1e-3)
    np.testing.assert_allclose(fused.scores, plain.scores, atol=1e-5)


def test_unusable_weights_or_no_input_stop_with_one_line(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    assert exit_status(main, ["--weights", str(tmp_path / "missing.pth"), "--images", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument --weights: '{tmp_path / 'missing.pth'}': file not found" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert exit_status(main, ["--weights", str(weights), "--images", str(empty)]) == 2
    assert "argument --images: " in (err := capsys.readouterr().err) and "is an empty folder" in err


def test_output_names_stay_distinct():
    paths = [Path("a/x.jpg"), Path("a/x.png"), Path("a/sub/x.jpg"), Path("a/y.bmp")]
    assert output_names(paths, Path("a")) == ["x_jpg", "x_png", "sub/x", "y"]
    assert output_names([Path("p/x.png"), Path("q/x.png")], None) == ["x_png", "x_png_2"]


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path):
    from core.io.image_input import ImageInputError
    from eval.detect import read_photo

    big = tmp_path / "big.png"
    big.write_bytes((SAMPLES / "camera.png").read_bytes())
    with pytest.raises(ImageInputError, match="over the 0 MB limit"):
        read_photo(big, max_bytes=1000)
    with pytest.raises(ImageInputError, match="not a file"):
        read_photo(tmp_path)
