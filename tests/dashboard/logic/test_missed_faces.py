"""Where two models differ: crafted images with known per-image counts, agreement with the evaluator,
the side-by-side panel, and the plain messages when predictions or images are absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.data.wider_gt import SETTINGS, GTImage, WiderGT, load_wider_gt
from core.synth.generate import generate_dataset
from dashboard.logic.missed_faces import (
    COLUMNS,
    FP_COLOR,
    GT_COLOR,
    TP_COLOR,
    data_root,
    draw_panel,
    image_differences,
    panel_boxes,
    predict_val,
    prediction_folder,
    record_weights,
    resolve_pair,
    synth_command,
    what_is_missing,
)
from eval.deploy.bn_fold import prepare_for_inference
from eval.widerface.protocol import evaluate
from tests.conftest import realistic_model
from tests.eval.widerface.test_protocol import random_gt, random_preds

ATTRS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


def image(name: str, n: int, easy: list[int] | None = None) -> GTImage:
    boxes = np.array([[10.0 + 60 * k, 10.0, 40.0, 40.0] for k in range(n)]).reshape(-1, 4)
    keep = {"easy": np.array(easy if easy is not None else range(n), int), "medium": np.arange(n),
            "hard": np.arange(n)}
    return GTImage("0--ev", name, boxes, {a: np.zeros(n, int) for a in ATTRS}, keep)


def det(gt_image: GTImage, faces: list[int], score: float, shift: float = 1.0) -> list[list[float]]:
    return [[*(gt_image.boxes[k] + [shift, shift, 0, 0]), score] for k in faces]


@pytest.fixture
def crafted() -> tuple[WiderGT, dict, dict]:
    a_img, b_img, c_img = image("a", 3), image("b", 2, easy=[0]), image("c", 1)
    gt = WiderGT((a_img, b_img, c_img))
    fa = [[400.0, 300.0, 20.0, 20.0, 0.9]]
    pred_a = {"0--ev": {
        "a": np.array(det(a_img, [0, 1], 0.9) + det(a_img, [2], 0.4) + fa),  # face 2 below the 0.5 threshold
        "b": np.array(det(b_img, [0, 1], 0.8)),
        "c": np.array(det(c_img, [0], 0.95) + det(c_img, [0], 0.7, shift=2.0)),  # duplicate: a false positive
    }}
    pred_b = {"0--ev": {
        "a": np.array(det(a_img, [1, 2], 0.9)),
        "b": np.array(det(b_img, [0], 0.8)),
        "c": np.zeros((0, 5)),
    }}
    return gt, pred_a, pred_b


def test_known_counts_hard(crafted) -> None:
    gt, pred_a, pred_b = crafted
    frame = image_differences(pred_a, pred_b, gt, score_thresh=0.5, setting="hard")
    assert tuple(frame.columns) == COLUMNS
    rows = frame.set_index("image")[list(COLUMNS[2:])].to_dict("index")
    # faces, found_a, found_b, only_a, only_b, fp_a, fp_b, difference
    assert list(rows["a"].values()) == [3, 2, 2, 1, 1, 1, 0, 3]
    assert list(rows["b"].values()) == [2, 2, 1, 1, 0, 0, 0, 1]
    assert list(rows["c"].values()) == [1, 1, 0, 1, 0, 1, 0, 2]
    assert frame["image"].tolist() == ["a", "c", "b"]  # largest difference first


def test_setting_ignores_faces_outside_its_keep_list(crafted) -> None:
    gt, pred_a, pred_b = crafted
    rows = image_differences(pred_a, pred_b, gt, 0.5, "easy").set_index("image")[list(COLUMNS[2:])].to_dict("index")
    # Image b, easy keeps face 0 only: A's detection of face 1 is ignored (neither found nor false).
    assert list(rows["b"].values()) == [1, 1, 1, 0, 0, 0, 0, 0]
    low = image_differences(pred_a, pred_b, gt, 0.3, "hard").set_index("image")
    assert low.loc["a", "found_a"] == 3 and low.loc["a", "only_a"] == 1  # the 0.4 detection now counts
    with pytest.raises(ValueError, match="setting"):
        image_differences(pred_a, pred_b, gt, 0.5, "extreme")


@pytest.mark.parametrize("seed", range(5))
def test_found_faces_agree_with_the_evaluator_recall(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = random_gt(rng, n_images=6)
    a, b = random_preds(rng, gt), random_preds(rng, gt)
    lowest = min([0.0] + [float(x[:, 4].min()) for imgs in a.values() for x in imgs.values() if len(x)])
    result = evaluate(a, gt)
    for setting in SETTINGS:
        frame = image_differences(a, b, gt, score_thresh=lowest, setting=setting)
        r = result.settings[setting]
        assert frame["faces"].sum() == r.num_faces
        assert frame["found_a"].sum() == round(r.recall[-1] * r.num_faces)  # every detection counts at t = 0


def test_panel_boxes_agree_with_the_table_and_draw(crafted) -> None:
    gt, pred_a, _ = crafted
    frame = image_differences(pred_a, pred_a, gt, 0.5, "easy").set_index("image")
    for im in gt.images:
        parts = panel_boxes(im, pred_a["0--ev"][im.name], 0.5, "easy")
        assert len(parts.true_positive) == frame.loc[im.name, "found_a"]
        assert len(parts.false_positive) == frame.loc[im.name, "fp_a"]
        assert len(parts.counted) == frame.loc[im.name, "faces"]
    parts = panel_boxes(gt.images[1], pred_a["0--ev"]["b"], 0.5, "easy")
    assert len(parts.ignored) == 1 and len(parts.ignored_match) == 1

    rgb = np.zeros((360, 480, 3), np.uint8)
    a_parts = panel_boxes(gt.images[0], pred_a["0--ev"]["a"], 0.5, "hard")
    out = draw_panel(rgb, a_parts)
    assert out.shape == rgb.shape and not rgb.any()  # the input is untouched
    assert tuple(out[310, 400]) == FP_COLOR  # left edge of the false alarm at x = 400, y 300..320
    tp_x = int(round(a_parts.true_positive[0][0]))
    assert tuple(out[30, tp_x]) == TP_COLOR
    assert tuple(out[30, 130]) == GT_COLOR  # face 2 (x = 130), missed at this threshold: gold box only
    masked = draw_panel(rgb, a_parts, mask=np.linspace(0, 1, 12).reshape(2, 6))
    assert masked[5:10, 200:210].any()  # the mask overlay colours the background


def test_where_predictions_and_images_come_from(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "predictions" / "x").mkdir(parents=True)
    payload = {"predict": {"predictions": "results/predictions/x"}, "dataset_path": "data/s"}
    assert prediction_folder(payload, tmp_path, [results]) == (results / "predictions" / "x", "")
    path, why = prediction_folder({"predict": {"predictions": "results/predictions/gone"}}, tmp_path, [results])
    assert path is None and "absent" in why
    path, why = prediction_folder(payload, tmp_path, [tmp_path / "elsewhere"])
    assert path is None and "outside" in why
    assert prediction_folder({}, tmp_path, [results])[0] is None

    path, why = data_root(payload, tmp_path, [results])
    assert path is None and "absent" in why
    (tmp_path / "data" / "s" / "ground_truth").mkdir(parents=True)
    (tmp_path / "data" / "s" / "val" / "images").mkdir(parents=True)
    assert data_root(payload, tmp_path, [results]) == (tmp_path / "data" / "s", "")
    outside = {"dataset_path": str(tmp_path / "data" / "s")}
    assert data_root(outside, tmp_path / "repo", [results])[0] is None

    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "cbam.pth").write_bytes(b"x")
    assert record_weights({"weights": "w/cbam.pth"}, tmp_path, [weights]) == (weights / "cbam.pth", "")
    assert "absent" in record_weights({"weights": "w/eca.pth"}, tmp_path, [weights])[1]
    assert "outside" in record_weights({"weights": "w/cbam.pth"}, tmp_path, [results])[1]
    assert record_weights({}, tmp_path, [weights])[0] is None


def test_missing_messages_say_what_and_how() -> None:
    manifest = {"dataset": "synthetic", "data": "data/synth_demo", "num_train": 400, "num_val": 100, "seed": 0,
                "max_size": 480}
    cmd = synth_command(manifest)
    assert cmd == ("python -m core.data.synth --out data/synth_demo --num-train 400 --num-val 100 --seed 0 "
                   "--min-size 256 --max-size 480")
    assert synth_command({"dataset": "widerface", "data": "x"}) is None
    msg = what_is_missing("synthetic", have_predictions=False, have_images=False, regenerate=cmd)
    assert msg.startswith("Not available") and cmd in msg and "eval.results" in msg
    assert "cannot be downloaded" in what_is_missing("widerface", True, False)
    assert what_is_missing("widerface", True, True) == ""


def test_predict_val_runs_a_model_over_the_val_list(tmp_path: Path, one_thread) -> None:
    data = generate_dataset(tmp_path / "d", num_train=0, num_val=2, seed=3, min_size=64, max_size=96)
    model = prepare_for_inference(realistic_model("cbam").eval())
    seen = []
    pred = predict_val(model, data, on_image=lambda i, n: seen.append((i, n)))
    gt = load_wider_gt(data / "ground_truth")
    assert seen == [(1, 2), (2, 2)]
    assert {(ev, name) for ev, imgs in pred.items() for name in imgs} == set(gt.index)
    assert all(x.shape[1] == 5 and (x[:, 4] >= 0.02).all() for imgs in pred.values() for x in imgs.values())
    frame = image_differences(pred, pred, gt, 0.02)
    assert (frame["difference"] == 0).all() and json.dumps(frame.to_dict())


def test_resolve_pair_says_what_is_there(tmp_path: Path) -> None:
    results, weights = tmp_path / "results", tmp_path / "weights"
    for folder in ("predictions/a", "predictions/b"):
        (results / folder).mkdir(parents=True)
    weights.mkdir()
    (weights / "cbam.pth").write_bytes(b"x")
    a = {"dataset": "synthetic", "dataset_path": "data/s", "predict": {"predictions": "results/predictions/a"},
         "weights": "weights/cbam.pth"}
    b = a | {"predict": {"predictions": "results/predictions/b"}, "weights": "weights/eca.pth"}
    manifest = {"dataset": "synthetic", "data": "data/s", "num_train": 4, "num_val": 2, "seed": 1}
    got = resolve_pair(a, b, tmp_path, [results], [weights], manifest)
    assert got.data is None and got.predictions == (results / "predictions" / "a", results / "predictions" / "b")
    assert got.weights == (weights / "cbam.pth", None) and not got.can_predict
    assert "--out data/s --num-train 4 --num-val 2 --seed 1" in got.missing and "B: weights" in " ".join(got.notes)

    (tmp_path / "data" / "s" / "ground_truth").mkdir(parents=True)
    (tmp_path / "data" / "s" / "val" / "images").mkdir(parents=True)
    got = resolve_pair(a, b, tmp_path, [results], [weights], manifest)
    assert got.data == tmp_path / "data" / "s" and got.missing == ""
    no_preds = resolve_pair(a | {"predict": {}}, b | {"predict": {}}, tmp_path, [results], [weights])
    assert "per-image predictions" in no_preds.missing  # and B's weights are absent, so no live run either
    other = resolve_pair(a, b | {"dataset_path": "data/t"}, tmp_path, [results], [weights])
    assert "different data" in other.missing and other.data is None
