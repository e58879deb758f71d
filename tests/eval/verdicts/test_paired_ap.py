"""Paired AP bootstrap: full-set numbers equal eval.widerface.protocol, a resample equals evaluating the resampled
image set, A vs A is exactly 0, real differences are found, seeds combine as documented, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from core.data.wider_gt import SETTINGS, GTImage, WiderGT, load_wider_gt
from core.data.wider_gt_write import write_wider_gt
from eval.verdicts.paired_ap import (
    _Counts,
    _resampled_ap,
    compare_predictions,
    compare_results,
    difference_table,
    load_reports,
    main,
    verdict,
    voc_ap_rows,
)
from eval.widerface.protocol import counted_subsets, evaluate, voc_ap
from eval.widerface.submission import META_FILE, write_predictions
from tests.conftest import REAL_GT, exit_status
from tests.eval.widerface.test_protocol import random_gt, random_preds

needs_real_gt = pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").exists(), reason="real WIDER val GT absent")


def face_gt(n_images: int, seed: int = 0) -> WiderGT:
    """Images with 3-6 well separated 40 px faces, every face in every setting."""
    rng = np.random.default_rng(seed)
    attrs = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    images = []
    for i in range(n_images):
        n = int(rng.integers(3, 7))
        boxes = np.array([[60.0 * k + 5, 10.0, 40.0, 40.0] for k in range(n)])
        keep = {s: np.arange(n) for s in SETTINGS}
        images.append(GTImage("0--ev", f"im{i}", boxes, {a: np.zeros(n, int) for a in attrs}, keep))
    return WiderGT(tuple(images))


def detector(gt: WiderGT, p_find: float, seed: int) -> dict:
    """Finds each face with probability p_find (score ~0.9) and adds two false alarms (score ~0.3)."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    for im in gt.images:
        found = im.boxes[rng.random(im.num_faces) < p_find]
        false_alarms = np.array([[500.0, 300.0, 30.0, 30.0, 0.0], [600.0, 300.0, 30.0, 30.0, 0.0]])
        false_alarms[:, 4] = rng.uniform(0.1, 0.5, 2)
        rows = [np.hstack([found, rng.uniform(0.7, 1.0, (len(found), 1))]), false_alarms]
        out.setdefault(im.event, {})[im.name] = np.vstack(rows)
    return out


def test_full_set_equals_two_widerface_runs_random() -> None:
    for seed in range(8):
        rng = np.random.default_rng(seed)
        gt = random_gt(rng, n_images=7)
        a, b = random_preds(rng, gt), random_preds(rng, gt)
        r = compare_predictions(a, b, gt, dataset="synthetic", resamples=5, breakdown=True)
        ea, eb = evaluate(a, gt), evaluate(b, gt)
        for s in SETTINGS:
            assert r["settings"][s]["ap_a"] == ea.ap[s] and r["settings"][s]["ap_b"] == eb.ap[s]
            assert r["settings"][s]["delta"] == eb.ap[s] - ea.ap[s]
        for group, vals in ea.breakdown.items():
            for label, res in vals.items():
                got = r["breakdown"][f"{group}={label}"]
                assert got["ap_a"] == res.ap and got["ap_b"] == eb.breakdown[group][label].ap
        m = r["settings"]["mAP"]
        assert m["delta"] == pytest.approx(np.mean([eb.ap[s] - ea.ap[s] for s in SETTINGS]), abs=1e-15)


def _duplicate(gt: WiderGT, pred: dict, weights: list[int]) -> tuple[WiderGT, dict]:
    """The resampled image set spelled out: image i repeated weights[i] times (new names)."""
    images, out = [], {}
    for im, w in zip(gt.images, weights, strict=True):
        for j in range(w):
            name = f"{im.name}_copy{j}"
            images.append(GTImage(im.event, name, im.boxes, im.attributes, im.keep))
            if im.name in pred.get(im.event, {}):
                out.setdefault(im.event, {})[name] = pred[im.event][im.name]
    for ev, imgs in pred.items():  # images outside the GT only set the score bounds
        for name, boxes in imgs.items():
            if (ev, name) not in gt.index:
                out.setdefault(ev, {})[name] = boxes
    return WiderGT(tuple(images)), out


@pytest.mark.parametrize("seed", range(6))
def test_one_resample_equals_evaluating_the_resampled_images(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    gt = random_gt(rng, n_images=8)
    pred = random_preds(rng, gt)
    scores = np.concatenate([b[:, 4] for imgs in pred.values() for b in imgs.values() if len(b)])
    # Pin the normalisation bounds with an image outside the GT, so dropping images cannot move them.
    pred["98--bounds"] = {"pin": np.array([[0, 0, 4, 4, min(scores.min(), 1.0)], [0, 0, 4, 4, max(scores.max(), 0.0)]])}
    weights = rng.integers(0, 4, len(gt))
    weights[0] = max(weights[0], 1)
    masks = [mask for g, _, mask in counted_subsets(gt)]
    counts = _Counts(pred, gt, masks, 0.5, 1000)
    ap = _resampled_ap(counts.hist.T.tocsr(), _face_counts(gt, masks), weights[None].astype(float), 1, len(masks),
                       1000)
    dup_gt, dup_pred = _duplicate(gt, pred, list(weights))
    expected = evaluate(dup_pred, dup_gt)
    flat = [*expected.settings.values(), *(r for vals in expected.breakdown.values() for r in vals.values())]
    np.testing.assert_allclose(ap[0, :, 0], [r.ap for r in flat], rtol=0, atol=1e-12)


def _face_counts(gt: WiderGT, masks: list[np.ndarray]) -> np.ndarray:
    owner = np.repeat(np.arange(len(gt)), [im.num_faces for im in gt.images])
    return np.stack([np.bincount(owner[m], minlength=len(gt)) for m in masks], axis=1).astype(float)


def test_voc_ap_rows_matches_voc_ap() -> None:
    rng = np.random.default_rng(3)
    recall = np.sort(rng.random((5, 50)), axis=1)
    recall[:, 10:20] = recall[:, 10:11]  # repeated recall values
    precision = rng.random((5, 50))
    expected = [voc_ap(r, p) for r, p in zip(recall, precision, strict=True)]
    np.testing.assert_allclose(voc_ap_rows(recall, precision), expected, rtol=0, atol=1e-14)


def test_a_vs_a_is_exactly_zero() -> None:
    gt = face_gt(30)
    a = detector(gt, 0.7, seed=1)
    r = compare_predictions(a, a, gt, dataset="synthetic", resamples=300, breakdown=True)
    for entry in [*r["settings"].values(), *r["breakdown"].values()]:
        assert entry["delta"] == 0.0 and entry["ci_low"] == 0.0 and entry["ci_high"] == 0.0
        assert entry["verdict"] == "indistinguishable"
    assert r["settings"]["easy"]["ap_a"] > 0.5


def test_clear_difference_is_detected_both_ways() -> None:
    gt = face_gt(40)
    weak, strong = detector(gt, 0.5, seed=1), detector(gt, 0.95, seed=2)
    up = compare_predictions(weak, strong, gt, dataset="synthetic", resamples=300)["settings"]
    down = compare_predictions(strong, weak, gt, dataset="synthetic", resamples=300)["settings"]
    for s in (*SETTINGS, "mAP"):
        assert up[s]["verdict"] == "better" and 0 < up[s]["ci_low"] <= up[s]["delta"] <= up[s]["ci_high"]
        assert down[s]["verdict"] == "worse" and down[s]["ci_high"] < 0
        assert down[s]["delta"] == -up[s]["delta"]


def test_noise_level_difference_is_indistinguishable_and_ci_reflects_sample_size() -> None:
    small, large = face_gt(15, seed=1), face_gt(150, seed=1)
    widths = []
    for gt in (small, large):
        r = compare_predictions(detector(gt, 0.8, 1), detector(gt, 0.8, 2), gt, dataset="synthetic",
                                resamples=400)["settings"]["easy"]
        assert r["ci_low"] < r["delta"] < r["ci_high"]
        widths.append(r["ci_high"] - r["ci_low"])
    assert r["verdict"] == "indistinguishable"  # same detector, two random draws, 150 images
    assert widths[1] < widths[0] / 1.8  # ~ 1 / sqrt(10) narrower with 10x the images


def test_deterministic_for_a_seed() -> None:
    gt = face_gt(20)
    a, b = detector(gt, 0.6, 1), detector(gt, 0.8, 2)
    one = compare_predictions(a, b, gt, dataset="synthetic", resamples=250, seed=7)
    assert one == compare_predictions(a, b, gt, dataset="synthetic", resamples=250, seed=7)
    other = compare_predictions(a, b, gt, dataset="synthetic", resamples=250, seed=8)
    assert other["settings"]["hard"]["delta"] == one["settings"]["hard"]["delta"]
    assert other["settings"]["hard"]["ci_low"] != one["settings"]["hard"]["ci_low"]


def test_seeds_average_and_two_level_adds_the_seed_spread() -> None:
    gt = face_gt(40)
    a_seeds = [detector(gt, p, seed=i) for i, p in enumerate((0.55, 0.75, 0.95))]
    b = detector(gt, 0.75, seed=9)
    fixed = compare_predictions(a_seeds, b, gt, dataset="synthetic", resamples=400, seed_mode="fixed")["settings"]
    two = compare_predictions(a_seeds, b, gt, dataset="synthetic", resamples=400)["settings"]
    singles = [evaluate(p, gt).ap["easy"] for p in a_seeds]
    for r in (fixed, two):
        assert r["easy"]["ap_a_seeds"] == singles
        assert r["easy"]["ap_a"] == pytest.approx(np.mean(singles), abs=1e-15)
        assert r["easy"]["seed_sd_a"] == pytest.approx(np.std(singles, ddof=1)) and r["easy"]["seed_sd_b"] is None
    assert two["easy"]["delta"] == fixed["easy"]["delta"]
    assert two["easy"]["ci_high"] - two["easy"]["ci_low"] > 2 * (fixed["easy"]["ci_high"] - fixed["easy"]["ci_low"])
    # Identical seeds carry no seed spread: both modes agree exactly.
    same = [a_seeds[1]] * 3
    r2 = compare_predictions(same, b, gt, dataset="synthetic", resamples=100)["settings"]["hard"]
    r1 = compare_predictions(a_seeds[1], b, gt, dataset="synthetic", resamples=100)["settings"]["hard"]
    assert (r2["ci_low"], r2["ci_high"]) == pytest.approx((r1["ci_low"], r1["ci_high"]), abs=1e-12)


def test_verdict_rule() -> None:
    assert verdict(0.001, 0.02) == "better"
    assert verdict(-0.02, -0.001) == "worse"
    assert verdict(-0.01, 0.01) == "indistinguishable"
    assert verdict(0.0, 0.0) == "indistinguishable"


def test_bad_arguments_raise_clear_errors() -> None:
    gt = face_gt(3)
    a = detector(gt, 0.5, 0)
    with pytest.raises(ValueError, match="resamples"):
        compare_predictions(a, a, gt, dataset="synthetic", resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        compare_predictions(a, a, gt, dataset="synthetic", confidence=1.5)
    with pytest.raises(ValueError, match="seed_mode"):
        compare_predictions(a, a, gt, dataset="synthetic", seed_mode="pooled")
    with pytest.raises(ValueError, match="no prediction set"):
        compare_predictions([], a, gt, dataset="synthetic")
    with pytest.raises(ValueError, match="at least 2"):
        compare_predictions(a, a, face_gt(1), dataset="synthetic")


def test_cli_writes_json_and_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = face_gt(25)
    gt_dir = tmp_path / "data" / "ground_truth"
    write_wider_gt(gt_dir, gt.images)
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"dataset": "synthetic"}))
    write_predictions(tmp_path / "a", detector(gt, 0.5, 1))
    write_predictions(tmp_path / "b", detector(gt, 0.95, 2))
    out = tmp_path / "cmp.json"
    args = ["--pred-a", str(tmp_path / "a"), "--pred-b", str(tmp_path / "b"), "--gt", str(gt_dir),
            "--resamples", "200", "--seed", "3", "--json", str(out)]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert data["dataset"] == "synthetic" and data["resamples"] == 200 and data["seed"] == 3
    assert data["seed_mode"] == "single seed"
    assert data["settings"]["easy"]["delta"] == pytest.approx(
        evaluate(detector(gt, 0.95, 2), gt).ap["easy"] - evaluate(detector(gt, 0.5, 1), gt).ap["easy"], abs=1e-12)
    assert data["settings"]["hard"]["verdict"] == "better"
    assert "better" in capsys.readouterr().out

    (tmp_path / "b" / "0--ev" / "im3.txt").unlink()
    assert main(args) == 2
    assert "missing prediction file" in capsys.readouterr().err
    assert exit_status(main, [*args[:5], str(tmp_path / "nowhere"), *args[6:]]) == 2
    assert "argument --gt: " in (err := capsys.readouterr().err) and "nowhere': folder not found" in err

    (tmp_path / "b" / "0--ev" / "im3.txt").write_text("0--ev/im3\n0\n")
    write_predictions(tmp_path / "a2", detector(gt, 0.55, 4))
    two_vs_one = ["--pred-a", str(tmp_path / "a"), str(tmp_path / "a2"), *args[2:]]
    assert main(two_vs_one) == 0
    warning = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:"))
    assert "A 2 and B 1" in warning and "seed spread of B is unknown (a single run)" in warning
    assert main([*two_vs_one, "--model-a", "cbam", "--model-b", "none"]) == 0
    assert "seed spread of none is unknown" in capsys.readouterr().err


def test_hist_blocks_count_every_prediction_once() -> None:
    gt = face_gt(10)
    pred = detector(gt, 0.8, 1)
    masks = [m for g, _, m in counted_subsets(gt) if g == "setting"]
    counts = _Counts(pred, gt, masks, 0.5, 1000)
    hist = sp.csr_matrix(counts.hist)
    per_image = np.asarray(hist[:, :1001].sum(axis=1)).ravel()
    assert per_image.tolist() == [len(pred["0--ev"][im.name]) for im in gt.images]


@needs_real_gt
def test_real_val_gt_full_set_delta_identical_to_widerface() -> None:
    from benchmarks.bench_evaluator import synthetic_predictions

    gt = load_wider_gt(REAL_GT)
    a, b = synthetic_predictions(gt, seed=0, per_image=10), synthetic_predictions(gt, seed=1, per_image=10)
    r = compare_predictions(a, b, gt, dataset="widerface", resamples=20)
    ea, eb = evaluate(a, gt).ap, evaluate(b, gt).ap
    for s in SETTINGS:
        assert r["settings"][s]["delta"] == eb[s] - ea[s]
    assert r["num_images"] == 3226


def _eval_json(results: Path, model: str, seed: int, data: str, preds: str) -> None:
    payload = {"model": model, "dataset": "synthetic", "dataset_path": data, "seed": seed,
               "predict": {"predictions": preds}}
    (results / "eval").mkdir(parents=True, exist_ok=True)
    (results / "eval" / f"{model}__synthetic__s{seed}.json").write_text(json.dumps(payload))


def test_compare_results_pairs_every_model_and_pools_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = face_gt(20)
    write_wider_gt(tmp_path / "data" / "ground_truth", gt.images)
    results = tmp_path / "results"
    runs = {("eca_cbam_parallel", 0): 0.9, ("eca_cbam_parallel", 1): 0.85, ("cbam", 0): 0.5, ("eca_cbam", 0): 0.6}
    for i, ((model, seed), p) in enumerate(runs.items()):
        folder = f"results/predictions/{model}_s{seed}"
        write_predictions(tmp_path / folder, detector(gt, p, seed=i))
        _eval_json(results, model, seed, "data", folder)
    _eval_json(results, "none", 0, "data", "results/predictions/none_s0")  # predictions not kept
    written, warnings = compare_results(results, base=tmp_path, resamples=100, progress=False)
    assert [p.name for p in written] == ["cbam__eca_cbam__synthetic.json", "cbam__eca_cbam_parallel__synthetic.json",
                                         "eca_cbam__eca_cbam_parallel__synthetic.json"]
    assert len(warnings) == 3 and "none_s0" in warnings[0] and "absent" in warnings[0]
    assert all("seed spread of" in w and "is unknown (a single run)" in w for w in warnings[1:])  # 2 vs 1 seeds
    data = json.loads(written[1].read_text())
    assert (data["model_a"], data["model_b"], data["seeds_a"], data["seeds_b"]) == ("cbam", "eca_cbam_parallel", 1, 2)
    assert data["seed_mode"] == "two-level" and "occlusion=2" in data["breakdown"]
    assert data["settings"]["easy"]["verdict"] == "better"
    expected = np.mean([evaluate(detector(gt, p, seed=i), gt).ap["easy"] for i, p in enumerate([0.9, 0.85])])
    assert data["settings"]["easy"]["ap_b"] == pytest.approx(expected, abs=1e-15)

    reports, bad = load_reports(results)
    assert len(reports) == 3 and not bad
    table = difference_table(reports)
    assert len(table) == 3 * 4 and table["subset"].tolist()[:4] == ["easy", "medium", "hard", "mAP"]
    row = table[(table["B - A"] == "ECA-CBAM parallel - CBAM baseline") & (table["subset"] == "easy")].iloc[0]
    assert row["delta"] == pytest.approx(100 * data["settings"]["easy"]["delta"])
    assert (row["verdict"], row["seeds"], row["CI covers"]) == ("better", "1 / 2", "images + seeds")
    assert row["seed sd A / B"].startswith("- / ")
    assert len(difference_table(reports, breakdown=True)) > len(table)
    (results / "compare_ap" / "junk.json").write_text("{")
    assert len(load_reports(results)[1]) == 1

    for path in [*written, results / "compare_ap" / "junk.json"]:
        path.unlink()
    assert main(["--results", str(results), "--resamples", "50"]) == 2  # paths are relative to the cwd
    assert "absent" in capsys.readouterr().err


def test_cli_names_models_from_the_prediction_folders(tmp_path: Path) -> None:
    gt = face_gt(6)
    write_wider_gt(tmp_path / "gt", gt.images)
    for name, p in (("cbam", 0.5), ("eca_cbam_parallel", 0.9)):
        write_predictions(tmp_path / name, detector(gt, p, seed=1))
        (tmp_path / name / META_FILE).write_text(json.dumps({"network": name}))
    out = tmp_path / "cmp.json"
    assert main(["--pred-a", str(tmp_path / "cbam"), "--pred-b", str(tmp_path / "eca_cbam_parallel"), "--gt",
                 str(tmp_path / "gt"), "--resamples", "20", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert (data["model_a"], data["model_b"], data["dataset"]) == ("cbam", "eca_cbam_parallel", "widerface")
    with pytest.raises(SystemExit):
        main(["--pred-a", str(tmp_path / "cbam"), "--json", str(out)])  # --pred-b and --gt missing
