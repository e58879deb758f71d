"""Prediction: submission layout round trip, resumability, resize mapping, and clear input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.boxes.postprocess import Detections
from core.checkpoint import CheckpointError, save_checkpoint
from core.data.wider_gt import load_wider_gt
from core.factory import build_model
from core.synth.generate import generate_dataset
from eval.widerface.predict import (
    PredictError,
    input_hw,
    list_val_images,
    load_for_eval,
    main,
    predict_image,
    predict_split,
    predict_to_dir,
    size_groups,
)
from eval.widerface.submission import read_predictions
from tests.conftest import exit_status


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Four small synthetic val images and a random eca_cbam_parallel checkpoint."""
    root = tmp_path_factory.mktemp("predict")
    data = generate_dataset(root / "data", num_train=0, num_val=4, seed=3, min_size=64, max_size=128)
    weights = root / "eca_cbam_parallel.pth"
    save_checkpoint(weights, build_model("eca_cbam_parallel"))
    return {"data": data, "weights": weights}


def _listed(data: Path) -> list[str]:
    return [line.strip() for line in (data / "val" / "wider_val.txt").read_text().splitlines() if line.strip()]


def test_layout_round_trip_matches_in_memory_predictions(tiny, tmp_path):
    model = load_for_eval("eca_cbam_parallel", tiny["weights"], "cpu")
    summary = predict_to_dir(model, tiny["data"], tmp_path / "pred", progress=False)
    assert (summary.written, summary.skipped, summary.total) == (4, 0, 4)

    gt = load_wider_gt(tiny["data"] / "ground_truth")
    read = read_predictions(tmp_path / "pred", gt, strict=True)  # strict: every gt image has a valid file
    files = sorted(p.relative_to(tmp_path / "pred").as_posix() for p in (tmp_path / "pred").glob("*/*.txt"))
    assert files == sorted(entry.lstrip("/").removesuffix(".jpg") + ".txt" for entry in _listed(tiny["data"]))

    memory = predict_split(model, tiny["data"])
    assert read.num_boxes > 0
    for event, images in memory.items():
        for name, boxes in images.items():
            on_disk = read.predictions[event][name]
            assert np.all(np.diff(on_disk[:, 4]) <= 0), "scores must be sorted descending"
            np.testing.assert_array_equal(on_disk, boxes)  # repr floats round-trip exactly


def test_second_run_skips_and_resumes_missing_files(tiny, tmp_path):
    model = load_for_eval("eca_cbam_parallel", tiny["weights"], "cpu")
    out = tmp_path / "pred"
    predict_to_dir(model, tiny["data"], out, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*.txt")}
    again = predict_to_dir(model, tiny["data"], out, progress=False)
    assert (again.written, again.skipped) == (0, 4)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.txt")} == stamps

    victim = sorted(stamps)[0]
    victim.unlink()
    resumed = predict_to_dir(model, tiny["data"], out, progress=False)
    assert (resumed.written, resumed.skipped) == (1, 3)
    assert victim.is_file()


def test_other_settings_are_refused_or_restarted(tiny, tmp_path):
    model = load_for_eval("eca_cbam_parallel", tiny["weights"], "cpu")
    out = tmp_path / "pred"
    predict_to_dir(model, tiny["data"], out, conf_thresh=0.02, progress=False)
    with pytest.raises(PredictError, match="conf_thresh"):
        predict_to_dir(model, tiny["data"], out, conf_thresh=0.5, progress=False)
    with pytest.raises(PredictError, match=r"\['keep_top_k', 'nms', 'top_k'\]"):
        predict_to_dir(model, tiny["data"], out, top_k=0, keep_top_k=0, nms_method="torchvision", progress=False)
    redone = predict_to_dir(model, tiny["data"], out, conf_thresh=0.5, on_change="restart", progress=False)
    assert redone.written == 4
    read = read_predictions(out, strict=True)
    assert all((b[:, 4] > 0.5).all() for imgs in read.predictions.values() for b in imgs.values())


class _StubModel:
    """Stands in for a detector: records the image it got and returns one fixed box."""

    def __init__(self) -> None:
        self.seen: tuple[int, ...] = ()
        self.postprocess: dict = {}

    def detect(self, rgb, conf_thresh, nms_thresh, forward=None, **postprocess):
        self.seen = rgb.shape
        self.postprocess = postprocess
        return Detections(boxes=np.array([[1, 2, 11, 22]], np.float32), scores=np.array([0.9], np.float32),
                          landmarks=np.zeros((1, 10), np.float32))


def test_resize_long_downscales_and_maps_boxes_back():
    stub, rgb = _StubModel(), np.zeros((100, 200, 3), np.uint8)
    rows = predict_image(stub, rgb, max_side=50)
    assert stub.seen[:2] == (25, 50)
    np.testing.assert_allclose(rows, [[4, 8, 40, 80, 0.9]], rtol=1e-6)
    predict_image(stub, rgb, max_side=400)  # never upscales
    assert stub.seen[:2] == (100, 200)
    assert stub.postprocess == {"top_k": 5000, "keep_top_k": 750, "nms_method": "pixel"}
    predict_image(stub, rgb, top_k=0, keep_top_k=0, nms_method="torchvision")
    assert stub.postprocess == {"top_k": 0, "keep_top_k": 0, "nms_method": "torchvision"}


def test_cli_writes_layout_and_resumes(tiny, tmp_path, capsys):
    args = ["--network", "eca_cbam_parallel", "--trained-model", str(tiny["weights"]), "--data", str(tiny["data"]),
            "--out", str(tmp_path / "pred"), "--resize-long", "96", "--device", "cpu"]
    assert main(args) == 0
    assert "4 written" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 written, 4 already present" in capsys.readouterr().out


def test_wrong_variant_checkpoint_is_a_clear_error(tiny, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="holds model 'eca_cbam_parallel'"):
        load_for_eval("cbam", tiny["weights"], "cpu")
    rc = main(["--network", "cbam", "--trained-model", str(tiny["weights"]), "--data", str(tiny["data"]),
               "--out", str(tmp_path / "pred")])
    assert rc == 2
    assert "but 'cbam' was requested" in capsys.readouterr().err
    assert not (tmp_path / "pred").exists()


def test_missing_weights_and_missing_image_list(tiny, tmp_path, capsys):
    rc = exit_status(main, ["--network", "cbam", "--trained-model", str(tmp_path / "nope.pth"),
                            "--data", str(tiny["data"]), "--out", str(tmp_path / "pred")])
    assert rc == 2
    assert "argument --trained-model: " in (err := capsys.readouterr().err) and "nope.pth': file not found" in err
    (tmp_path / "empty" / "val").mkdir(parents=True)
    rc = main(["--network", "eca_cbam_parallel", "--trained-model", str(tiny["weights"]),
               "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "pred")])
    assert rc == 2
    assert "wider_val.txt" in capsys.readouterr().err


DEMO_WEIGHTS = Path(__file__).resolve().parents[3] / "assets" / "demo" / "weights" / "eca_cbam_s0.pth"


@pytest.fixture(scope="module")
def same_sizes(tmp_path_factory) -> Path:
    """12 val images of 256 or 257 px sides: four input sizes, so groups of several images and single ones."""
    return generate_dataset(tmp_path_factory.mktemp("sizes") / "data", num_train=0, num_val=12, seed=4,
                            min_size=256, max_size=257)


def _val_paths(data: Path) -> list[Path]:
    return [data / "val" / "images" / event / image for event, image in list_val_images(data)]


def test_size_groups_cover_every_image_once_with_one_input_size_each(same_sizes, tmp_path):
    paths = _val_paths(same_sizes)
    groups = list(size_groups(paths, None, 3))
    assert sorted(i for g in groups for i in g) == list(range(len(paths)))
    assert max(len(g) for g in groups) == 3 and any(len(g) < 3 for g in groups)
    for group in groups:
        assert len({read_rgb_shape(paths[i]) for i in group}) == 1
    assert len(list(size_groups(paths, 100, 64))) < len({read_rgb_shape(p) for p in paths}), \
        "downscaled to 100 px, sizes merge"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert [g for g in size_groups([*paths[:2], broken], None, 8) if 2 in g] == [[2]]
    assert input_hw((300, 600), 100) == (50, 100) and input_hw((30, 60), 100) == (30, 60)


def read_rgb_shape(path: Path) -> tuple[int, ...]:
    from eval.widerface.predict import read_rgb

    return read_rgb(path).shape


def _canonical(rows: np.ndarray, min_score: float) -> np.ndarray:
    rows = rows[rows[:, 4] > min_score]
    return rows[np.lexsort(np.round(rows, 2).T[::-1])]


def test_batched_prediction_gives_batch_one_detections_and_the_same_wider_ap(same_sizes, tmp_path):
    """Trained demo weights (synthetic set) so that AP is far from 0. A batched forward pass rounds
    differently from a single one (CPU kernels block by batch), so boxes agree to 1e-3 px and boxes with
    equal scores may swap order; the AP must come out identical."""
    from eval.widerface.protocol import evaluate

    model = load_for_eval("eca_cbam", DEMO_WEIGHTS, "cpu")
    one = predict_split(model, same_sizes, batch_size=1)
    many = predict_split(model, same_sizes, batch_size=4)
    assert list(one) == list(many) and all(list(one[e]) == list(many[e]) for e in one)
    for event, images in one.items():
        for name, rows in images.items():
            assert rows.shape == many[event][name].shape
            np.testing.assert_allclose(_canonical(many[event][name], 0.1), _canonical(rows, 0.1), atol=1e-3, rtol=0)
    gt = load_wider_gt(same_sizes / "ground_truth")
    ap_one = evaluate(one, gt).ap
    assert ap_one["easy"] > 0.05  # the demo weights find faces here (0.11), so equal AP is not 0 == 0
    assert evaluate(many, gt).ap == ap_one

    summary = predict_to_dir(model, same_sizes, tmp_path / "pred", progress=False, batch_size=4)
    assert summary.written == 12
    assert evaluate(read_predictions(tmp_path / "pred", gt, strict=True).predictions, gt).ap == ap_one


def test_anchors_stay_on_the_device_in_a_bounded_cache():
    from core.detector import ANCHOR_CACHE_SIZE

    model = build_model("none")
    first = model.anchors_for((64, 96), torch.device("cpu"))
    assert model.anchors_for((64, 96), torch.device("cpu")) is first, "a cached size is not rebuilt or copied"
    for h in range(ANCHOR_CACHE_SIZE + 5):
        model.anchors_for((32 + h, 32), torch.device("cpu"))
    assert len(model._anchor_cache) == ANCHOR_CACHE_SIZE
    assert model.anchors_for((64, 96), torch.device("cpu")) is not first, "the oldest size was evicted"


def test_batch_size_needs_the_torch_backend(tiny, tmp_path, capsys):
    rc = main(["--network", "eca_cbam_parallel", "--trained-model", str(tiny["weights"]), "--data", str(tiny["data"]),
               "--out", str(tmp_path / "pred"), "--batch-size", "4", "--backend", "onnxruntime"])
    assert rc == 2 and "--batch-size 4 needs --backend torch" in capsys.readouterr().err
    assert not (tmp_path / "pred").exists()
