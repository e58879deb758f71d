"""Vectorised WIDER FACE evaluator vs a loop oracle that mirrors RetinaFace's evaluation.py.

The oracle keeps the reference structure on purpose (per image, per prediction, per threshold
loops; IoU per pair with Python floats; NaN precision where nothing is proposed; the envelope
loop). Its only change is the documented one: when all scores are equal it maps them to 1.0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.data.wider_gt import ATTRIBUTES, SETTINGS, GTImage, WiderGT, load_wider_gt
from core.data.wider_gt_write import write_wider_gt
from eval.widerface.protocol import BREAKDOWN_VALUES, evaluate, main, thresholds, voc_ap
from eval.widerface.submission import write_predictions
from tests.conftest import REAL_GT

# Oracle


def oracle_overlaps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pairwise IoU, x1 y1 x2 y2 boxes, +1 pixel convention, same operation order as box_overlaps.pyx."""
    p, g = pred.tolist(), gt.tolist()
    out = np.zeros((len(p), len(g)))
    for k, q in enumerate(g):
        q_area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        for n, b in enumerate(p):
            iw = min(b[2], q[2]) - max(b[0], q[0]) + 1
            if iw > 0:
                ih = min(b[3], q[3]) - max(b[1], q[1]) + 1
                if ih > 0:
                    ua = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + q_area - iw * ih
                    out[n, k] = iw * ih / ua
    return out


def oracle_image_eval(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray, iou_thresh: float):
    p, g = pred.copy(), gt.copy()
    pred_recall = np.zeros(len(p))
    recall_list = np.zeros(len(g))
    proposal_list = np.ones(len(p))
    p[:, 2] += p[:, 0]
    p[:, 3] += p[:, 1]
    g[:, 2] += g[:, 0]
    g[:, 3] += g[:, 1]
    overlaps = oracle_overlaps(p[:, :4], g)
    for h in range(len(p)):
        max_overlap, max_idx = overlaps[h].max(), overlaps[h].argmax()
        if max_overlap >= iou_thresh:
            if ignore[max_idx] == 0:
                recall_list[max_idx] = -1
                proposal_list[h] = -1
            elif recall_list[max_idx] == 0:
                recall_list[max_idx] = 1
        pred_recall[h] = len(np.where(recall_list == 1)[0])
    return pred_recall, proposal_list


def oracle_img_pr_info(thresh_num: int, pred: np.ndarray, proposal_list, pred_recall) -> np.ndarray:
    pr_info = np.zeros((thresh_num, 2))
    for t in range(thresh_num):
        thresh = 1 - (t + 1) / thresh_num
        r_index = np.where(pred[:, 4] >= thresh)[0]
        if len(r_index) == 0:
            continue
        r = r_index[-1]
        pr_info[t, 0] = len(np.where(proposal_list[: r + 1] == 1)[0])
        pr_info[t, 1] = pred_recall[r]
    return pr_info


def oracle_voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def oracle_normalise(pred: dict) -> dict:
    max_score, min_score = 0.0, 1.0
    for imgs in pred.values():
        for v in imgs.values():
            if len(v):
                min_score = min(np.min(v[:, 4]), min_score)
                max_score = max(np.max(v[:, 4]), max_score)
    diff = max_score - min_score
    out = {}
    for ev, imgs in pred.items():
        out[ev] = {}
        for name, v in imgs.items():
            v = np.array(v, dtype=np.float64).reshape(-1, 5)
            if len(v):
                v[:, 4] = 1.0 if diff == 0 else (v[:, 4] - min_score) / diff  # documented deviation at diff == 0
            out[ev][name] = v
    return out


def oracle_evaluate(pred: dict, gt: WiderGT, keeps: dict[str, list[np.ndarray]], iou_thresh=0.5, thresh_num=1000):
    """keeps: subset name -> per-image 0-based kept indices. Returns name -> (ap, precision, recall)."""
    pred = oracle_normalise(pred)
    out = {}
    for name, keep_lists in keeps.items():
        count_face = 0
        pr_curve = np.zeros((thresh_num, 2))
        for im, keep in zip(gt.images, keep_lists, strict=True):
            pred_info = pred.get(im.event, {}).get(im.name, np.zeros((0, 5)))
            pred_info = pred_info[np.argsort(-pred_info[:, 4], kind="stable")]
            count_face += len(keep)
            if len(im.boxes) == 0 or len(pred_info) == 0:
                continue
            ignore = np.zeros(len(im.boxes))
            ignore[keep] = 1
            pred_recall, proposal_list = oracle_image_eval(pred_info, im.boxes.astype(float), ignore, iou_thresh)
            pr_curve += oracle_img_pr_info(thresh_num, pred_info, proposal_list, pred_recall)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = pr_curve[:, 1] / pr_curve[:, 0]
            recall = pr_curve[:, 1] / count_face
        out[name] = (oracle_voc_ap(recall, precision), precision, recall)
    return out


def reference_keeps(gt: WiderGT) -> dict[str, list[np.ndarray]]:
    """Keep lists for settings and the documented breakdown rule, derived independently of eval."""
    keeps = {s: [im.keep[s] for im in gt.images] for s in SETTINGS}
    for attr, values in BREAKDOWN_VALUES.items():
        for v in values:
            keeps[f"{attr}={v}"] = [im.keep["hard"][im.attributes[attr][im.keep["hard"]] == v] for im in gt.images]
    bins = {"small": lambda h: 10 <= h < 50, "medium": lambda h: 50 <= h <= 300, "large": lambda h: h > 300}
    for b, rule in bins.items():
        keeps[f"scale={b}"] = [np.array([k for k in im.keep["hard"] if rule(im.boxes[k, 3])], int) for im in gt.images]
    return keeps


def flat_results(result) -> dict:
    out = dict(result.settings)
    for vals in result.breakdown.values():
        out |= {r.name: r for r in vals.values()}
    return out


def assert_same(result, oracle) -> None:
    ours = flat_results(result)
    assert set(ours) == set(oracle)
    for name, (ap, precision, recall) in oracle.items():
        r = ours[name]
        if math.isnan(ap):  # the script's 0/0 recall when nothing is counted; we define AP 0
            assert r.num_faces == 0 and r.ap == 0.0, name
            continue
        assert abs(r.ap - ap) <= 1e-9, (name, r.ap, ap)
        defined = ~np.isnan(precision)
        np.testing.assert_array_equal(r.precision[defined], precision[defined], err_msg=name)
        assert np.all(r.precision[~defined] == 0), name
        np.testing.assert_array_equal(r.recall, recall, err_msg=name)


# Random cases


def attrs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    highs = {"blur": 3, "expression": 2, "illumination": 2, "invalid": 2, "occlusion": 3, "pose": 2}
    return {a: rng.integers(0, highs[a], n) for a in ATTRIBUTES}


def random_gt(rng: np.random.Generator, n_images: int, max_faces: int = 14) -> WiderGT:
    images = []
    for i in range(n_images):
        n = int(rng.integers(0, max_faces + 1)) if rng.random() > 0.15 else 0
        xy = rng.integers(0, 400, (n, 2))
        wh = rng.integers(1, 120, (n, 2))
        if n and rng.random() < 0.2:
            wh[rng.integers(0, n)] = rng.integers(-2, 1, 2)  # degenerate faces exist in the real GT
        if n and rng.random() < 0.2:
            wh[rng.integers(0, n), 1] = rng.integers(300, 500)  # large faces
        hard = np.flatnonzero(rng.random(n) < 0.8)
        medium = hard[rng.random(len(hard)) < 0.6]
        easy = medium[rng.random(len(medium)) < 0.5]
        if n and rng.random() < 0.15:
            hard = medium = easy = np.zeros(0, int)  # all faces of the image ignored
        keep = {"easy": easy, "medium": medium, "hard": hard}
        images.append(GTImage(f"{i % 3}--ev", f"img_{i}", np.hstack([xy, wh]), attrs(rng, n), keep))
    images.sort(key=lambda im: im.event)
    return WiderGT(tuple(images))


def random_preds(rng: np.random.Generator, gt: WiderGT) -> dict:
    tied = rng.random() < 0.4
    integral = rng.random() < 0.5
    raw_scale = rng.choice([1.0, 1.0, 5.0, -3.0])  # logit-like scores exercise the normalisation bounds
    pred: dict = {}
    for im in gt.images:
        if rng.random() < 0.15:
            continue  # no file at all for this image
        rows = []
        for b in im.boxes:
            if rng.random() < 0.75:
                jitter = rng.normal(0, 0.08, 4) * max(b[2], 4)
                for _ in range(1 + int(rng.random() < 0.25)):  # duplicates: identical boxes
                    rows.append([*(b + jitter), 0.0])
        for _ in range(int(rng.integers(0, 8))):
            rows.append([*rng.uniform(0, 400, 2), *rng.uniform(2, 80, 2), 0.0])
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        if integral:  # whole-pixel boxes make exact IoU ties and IoU == threshold common
            arr[:, :4] = np.round(arr[:, :4])
        arr[:, 4] = rng.choice([0.2, 0.5, 0.9], len(arr)) if tied else rng.random(len(arr))
        arr[:, 4] *= raw_scale
        rng.shuffle(arr)
        pred.setdefault(im.event, {})[im.name] = arr
    if rng.random() < 0.3:
        pred.setdefault("99--unknown", {})["stray"] = np.array([[1.0, 1.0, 5.0, 5.0, 0.99 * raw_scale]])
    return pred


@pytest.mark.parametrize("seed", range(60))
def test_vectorised_matches_oracle_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = random_gt(rng, n_images=int(rng.choice([1, 2, 5, 9])))
    pred = random_preds(rng, gt)
    thresh_num = int(rng.choice([1000, 1000, 97, 10]))
    iou = float(rng.choice([0.5, 0.5, 0.3, 0.7]))
    result = evaluate(pred, gt, iou_thresh=iou, thresh_num=thresh_num)
    assert_same(result, oracle_evaluate(pred, gt, reference_keeps(gt), iou_thresh=iou, thresh_num=thresh_num))


def test_crowded_image_many_ties_and_duplicates() -> None:
    rng = np.random.default_rng(1234)
    gt = random_gt(rng, n_images=3, max_faces=120)
    pred = random_preds(rng, gt)
    for imgs in pred.values():
        for arr in imgs.values():
            arr[:, 4] = np.round(arr[:, 4], 1)
    assert_same(evaluate(pred, gt), oracle_evaluate(pred, gt, reference_keeps(gt)))


# Edge cases


def face(event: str, name: str, boxes, keep=None) -> GTImage:
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    n = len(boxes)
    keep = np.arange(n) if keep is None else np.asarray(keep, int)
    return GTImage(event, name, boxes, {a: np.zeros(n, int) for a in ATTRIBUTES}, {s: keep for s in SETTINGS})


def test_hand_computed_ap() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20], [100, 100, 20, 20]]),))
    pred = {"e": {"a": np.array([[0, 0, 20, 20, 0.9], [50, 50, 10, 10, 0.5], [100, 100, 20, 20, 0.1]])}}
    r = evaluate(pred, gt).settings["hard"]
    # recall 1/2 at precision 1, then the second face at precision 2/3
    assert r.ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)
    assert r.num_faces == 2


def test_iou_exactly_at_threshold_matches() -> None:
    # gt area 10 * 10 = 100, prediction 10 * 5 inside it: IoU = 50 / 100 = 0.5 exactly
    gt = WiderGT((face("e", "a", [[0, 0, 9, 9]]),))
    pred = {"e": {"a": np.array([[0, 0, 9, 4, 0.9], [200, 200, 9, 9, 0.1]])}}
    assert evaluate(pred, gt).settings["hard"].ap == pytest.approx(1.0)
    assert evaluate(pred, gt, iou_thresh=0.5000001).settings["hard"].ap == 0.0


def test_ignored_face_is_not_a_false_positive() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20], [100, 100, 20, 20]], keep=[0]),))
    pred = {"e": {"a": np.array([[100, 100, 20, 20, 0.9], [0, 0, 20, 20, 0.5]])}}
    r = evaluate(pred, gt).settings["easy"]
    assert r.ap == pytest.approx(1.0)
    assert r.precision.max() == 1.0 and r.num_faces == 1


def test_empty_and_all_ignored_sets() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20]], keep=[]), face("e", "b", np.zeros((0, 4)))))
    pred = {"e": {"a": np.array([[0, 0, 20, 20, 0.9], [40, 0, 20, 20, 0.3]]), "b": np.array([[1, 1, 5, 5, 0.8]])}}
    result = evaluate(pred, gt)
    assert all(r.ap == 0.0 and r.num_faces == 0 for r in flat_results(result).values())
    assert np.isfinite(result.settings["hard"].precision).all()
    assert_same(result, oracle_evaluate(pred, gt, reference_keeps(gt)))


def test_no_predictions_at_all() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20]]),))
    for pred in ({}, {"e": {}}, {"e": {"a": np.zeros((0, 5))}}):
        result = evaluate(pred, gt)
        assert result.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
        assert result.num_images_without_predictions == 1


def test_constant_scores_give_single_operating_point() -> None:
    """Documented deviation: equal scores normalise to 1.0 instead of the script's NaN (AP 0)."""
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20], [100, 100, 20, 20]]),))
    pred = {"e": {"a": np.array([[0, 0, 20, 20, 1.0], [300, 300, 20, 20, 1.0]])}}
    r = evaluate(pred, gt).settings["hard"]
    assert r.ap == pytest.approx(0.5 * 0.5)
    assert_same(evaluate(pred, gt), oracle_evaluate(pred, gt, reference_keeps(gt)))


def test_score_normalisation_bounds_follow_the_script() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20]]),))
    pred = {"e": {"a": np.array([[0, 0, 20, 20, 3.0], [50, 50, 10, 10, 5.0]])}}
    assert evaluate(pred, gt).score_range == (1.0, 5.0)  # min starts at 1, not at 3


def test_unknown_images_count_in_normalisation_only() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20]]),))
    base = {"e": {"a": np.array([[0, 0, 20, 20, 0.4], [60, 60, 20, 20, 0.6]])}}
    extra = base | {"x": {"stray": np.array([[0, 0, 20, 20, 0.0]])}}
    a, b = evaluate(base, gt), evaluate(extra, gt)
    assert a.score_range == (0.4, 0.6) and b.score_range == (0.0, 0.6)
    assert b.num_unknown_images == 1 and b.num_matched_predictions == 2
    assert_same(b, oracle_evaluate(extra, gt, reference_keeps(gt)))


def test_score_ties_keep_file_order() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20]]),))
    pred = {"e": {"a": np.array([[0, 0, 20, 20, 0.5], [0, 0, 20, 20, 0.5], [90, 90, 9, 9, 0.2]])}}
    assert_same(evaluate(pred, gt), oracle_evaluate(pred, gt, reference_keeps(gt)))


def test_voc_ap_and_thresholds_match_reference_loops() -> None:
    rng = np.random.default_rng(0)
    rec = np.sort(rng.random(50))
    prec = rng.random(50)
    assert voc_ap(rec, prec) == oracle_voc_ap(rec, prec)
    assert [1 - (t + 1) / 1000 for t in range(1000)] == thresholds(1000).tolist()


def test_rejects_bad_prediction_arrays() -> None:
    gt = WiderGT((face("e", "a", [[0, 0, 20, 20]]),))
    with pytest.raises(ValueError, match="e/a"):
        evaluate({"e": {"a": np.array([[0, 0, 20, 20, np.nan]])}}, gt)
    with pytest.raises(ValueError, match="e/a"):
        evaluate({"e": {"a": np.ones((2, 4))}}, gt)


# Real GT + CLI

needs_real_gt = pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").exists(), reason="real WIDER val GT absent")


def jittered_preds(gt: WiderGT, rng: np.random.Generator) -> dict:
    pred: dict = {}
    for im in gt.images:
        b = im.boxes[rng.random(len(im.boxes)) < 0.7]
        b = b + rng.normal(0, 0.05, b.shape) * np.maximum(b[:, 2:3], 1)
        fa = np.hstack([rng.uniform(0, 900, (5, 2)), rng.uniform(5, 100, (5, 2))])
        rows = np.vstack([b, fa])
        pred.setdefault(im.event, {})[im.name] = np.hstack([rows, rng.random((len(rows), 1))])
    return pred


@needs_real_gt
def test_real_gt_subset_matches_oracle() -> None:
    full = load_wider_gt(REAL_GT)
    rng = np.random.default_rng(7)
    pick = sorted(rng.choice(len(full), 40, replace=False))
    gt = WiderGT(tuple(full.images[i] for i in pick))
    pred = jittered_preds(gt, rng)
    assert_same(evaluate(pred, gt), oracle_evaluate(pred, gt, reference_keeps(gt)))


@needs_real_gt
def test_real_gt_full_counts() -> None:
    gt = load_wider_gt(REAL_GT)
    result = evaluate({}, gt)
    assert {k: r.num_faces for k, r in result.settings.items()} == {"easy": 7211, "medium": 13319, "hard": 31958}
    for attr, vals in result.breakdown.items():
        if attr != "scale":
            assert sum(r.num_faces for r in vals.values()) == 31958, attr
    scale = sum(r.num_faces for r in result.breakdown["scale"].values())
    assert scale == 31958 - 3  # three hard faces are under 10 px tall


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    gt = random_gt(rng, 6)
    write_wider_gt(tmp_path / "gt", gt.images)
    pred = {im.event: {} for im in gt.images}
    for im in gt.images:
        rows = np.hstack([im.boxes, rng.random((len(im.boxes), 1))])
        pred[im.event][im.name] = rows[(rows[:, 2] >= 0) & (rows[:, 3] >= 0)]
    write_predictions(tmp_path / "pred", pred)
    out_json = tmp_path / "res.json"
    assert main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "hard" in printed and "occlusion=1" in printed
    data = json.loads(out_json.read_text())
    expected = evaluate(pred, gt).ap
    assert data["ap"] == pytest.approx(expected, abs=1e-12)
    assert len(data["settings"]["hard"]["precision"]) == 1000

    (tmp_path / "pred" / gt.images[0].event / f"{gt.images[0].name}.txt").unlink()
    assert main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    assert "missing prediction file" in capsys.readouterr().err
    assert main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--lenient"]) == 0
    assert "warning" in capsys.readouterr().err
