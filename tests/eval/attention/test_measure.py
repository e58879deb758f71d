"""Heatmap quality metrics: crafted masks and boxes with known answers, paired summaries, and one real
run of the CLI on tiny models (masks from the forward pass, one per image and model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import save_checkpoint
from core.data.wider_gt import load_wider_gt
from core.detector import FeatherFace
from core.factory import build_model
from core.synth.generate import generate_dataset
from dashboard.logic.attention_report import load_report, pair_table, stats_figure, stats_table
from eval.attention.measure import AttentionStatsError, attention_stats, main
from eval.attention.metrics import ALL_LEVELS, MASK_KINDS, METRICS, box_union, heatmap_metrics, mask_metrics, summarise
from tests.conftest import exit_status, realistic_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_box_union_pixels() -> None:
    inside = box_union(np.array([[1, 2, 3, 2], [-5, -5, 6, 6], [7.2, 0.5, 1.1, 1.0], [3, 3, 0, 4]]), 6, 10)
    expected = np.zeros((6, 10), bool)
    expected[2:4, 1:4] = True  # x 1..3, y 2..3
    expected[0:1, 0:1] = True  # clipped at the top-left corner: -5 + 6 = 1
    expected[0:2, 7:9] = True  # floor(7.2)=7 .. ceil(8.3)=9, floor(0.5)=0 .. ceil(1.5)=2
    np.testing.assert_array_equal(inside, expected)  # the w = 0 box adds nothing
    assert not box_union(np.zeros((0, 4)), 3, 3).any()


def test_metrics_at_image_resolution_known_answers() -> None:
    inside = np.zeros((4, 6), bool)
    inside[1:3, 2:5] = True  # 6 of 24 pixels
    mask = np.full((4, 6), 0.25)
    mask[1:3, 2:5] = 1.0
    mask[2, 4] = 0.9  # the maximum (1.0) is tied over five in-box pixels
    m = mask_metrics(mask, inside)
    assert m["area_in_boxes"] == 0.25
    assert m["energy_in_boxes"] == pytest.approx(5.9 / (5.9 + 18 * 0.25))
    assert m["energy_gain"] == pytest.approx(m["energy_in_boxes"] - 0.25)
    assert m["pointing_game"] == 1.0
    assert m["share_above_half"] == 0.25
    p = mask.ravel() / mask.sum()
    assert m["entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(24))

    away = mask.copy()
    away[0, 0] = 1.0  # one more tied maximum, outside the boxes: expected hit 5 / 6
    assert mask_metrics(away, inside)["pointing_game"] == pytest.approx(5 / 6)


def test_constant_mask_is_at_chance_and_uniform() -> None:
    inside = box_union(np.array([[0, 0, 10, 5]]), 20, 20)
    m = mask_metrics(np.full((5, 5), 0.3), inside)
    assert m["energy_in_boxes"] == pytest.approx(m["area_in_boxes"]) and m["area_in_boxes"] == 0.125
    assert m["pointing_game"] == pytest.approx(0.125)  # every pixel ties: a random one is in a box 1/8 of the time
    assert m["entropy"] == pytest.approx(1.0) and m["share_above_half"] == 0.0
    zero = mask_metrics(np.zeros((5, 5)), inside)
    assert math.isnan(zero["energy_in_boxes"]) and math.isnan(zero["entropy"])


def test_peaked_mask_upsampled_like_the_overlay() -> None:
    mask = np.zeros((4, 4))
    mask[3, 3] = 1.0  # one hot cell, bottom right; image 4x the feature size
    hit = mask_metrics(mask, box_union(np.array([[12, 12, 4, 4]]), 16, 16))
    miss = mask_metrics(mask, box_union(np.array([[0, 0, 8, 8]]), 16, 16))
    assert hit["pointing_game"] == 1.0 and miss["pointing_game"] == 0.0
    assert hit["energy_in_boxes"] > 0.5 and miss["energy_in_boxes"] == 0.0
    assert hit["entropy"] == 0.0  # all mass in one cell at feature resolution


def fake_heatmaps(value: float) -> dict:
    def level(h: int) -> dict:
        return {"channel_mask": np.ones(4), "spatial_mask": np.full((h, h), value), "hybrid_mask": np.full((h, h), 0.2)}

    return {"backbone": {s: level(8) for s in ALL_LEVELS[:3]}, "bifpn": {p: level(4) for p in ALL_LEVELS[3:]}}


def test_heatmap_metrics_cover_every_level_and_kind() -> None:
    inside = box_union(np.array([[0, 0, 16, 16]]), 32, 32)
    out = heatmap_metrics(fake_heatmaps(0.8), inside)
    assert set(out) == {(lv, k) for lv in ALL_LEVELS for k in MASK_KINDS}
    assert out[("P4", "spatial")]["share_above_half"] == 1.0 and out[("P4", "hybrid")]["share_above_half"] == 0.0
    assert out[("stage1", "spatial")]["area_in_boxes"] == 0.25


def _per_image(n: int, base: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return base + rng.normal(0, 0.05, (n, len(ALL_LEVELS), len(MASK_KINDS), len(METRICS)))


def test_summarise_pairs_are_paired_and_verdicts_follow_the_ci() -> None:
    a = _per_image(60, 0.4, seed=1)
    b = a + 0.02  # the same images, consistently higher: tiny but certain
    c = _per_image(60, 0.4, seed=2)  # independent noise of the same level
    rows, pairs = summarise({"cbam": a, "eca_cbam": b, "eca_cbam_parallel": c}, resamples=300)
    assert len(rows) == 3 * len(ALL_LEVELS) * len(MASK_KINDS) * len(METRICS)
    row = next(r for r in rows if (r["model"], r["level"], r["mask"], r["metric"]) == ("cbam", "P3", "hybrid",
                                                                                         "entropy"))
    assert row["mean"] == pytest.approx(a[:, 3, 1, METRICS.index("entropy")].mean())
    assert row["ci_low"] < row["mean"] < row["ci_high"] and row["n"] == 60
    ab = [p for p in pairs if (p["model_a"], p["model_b"]) == ("cbam", "eca_cbam")]
    assert all(p["verdict"] == "higher" and p["delta"] == pytest.approx(0.02) for p in ab)
    assert all(p["ci_low"] == pytest.approx(0.02) and p["ci_high"] == pytest.approx(0.02) for p in ab)
    ac = [p for p in pairs if (p["model_a"], p["model_b"]) == ("cbam", "eca_cbam_parallel")]
    assert sum(p["verdict"] == "indistinguishable" for p in ac) > 0.8 * len(ac)
    same_rows, same_pairs = summarise({"cbam": a, "eca_cbam": a.copy()}, resamples=50)
    assert all((p["delta"], p["ci_low"], p["ci_high"], p["verdict"]) == (0.0, 0.0, 0.0, "indistinguishable")
               for p in same_pairs)


def test_summarise_skips_undefined_values() -> None:
    a = _per_image(10, 0.5, seed=3)
    a[:4, 0, 0, 0] = np.nan
    rows, _ = summarise({"cbam": a}, resamples=50)
    first = rows[0]
    assert (first["level"], first["mask"], first["metric"]) == ("stage1", "spatial", "energy_in_boxes")
    assert first["n"] == 6 and first["mean"] == pytest.approx(np.nanmean(a[:, 0, 0, 0]))
    with pytest.raises(ValueError, match="must be"):
        summarise({"cbam": a[:, :2]})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attn")
    data = generate_dataset(root / "data", num_train=0, num_val=3, seed=5, min_size=64, max_size=112)
    weights = root / "weights"
    for i, name in enumerate(("cbam", "eca_cbam_parallel")):
        save_checkpoint(weights / f"{name}.pth", realistic_model(name, seed=i))
    save_checkpoint(weights / "none.pth", build_model("none"))
    return {"data": data, "weights": weights}


def test_cli_real_forward_pass(tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = FeatherFace.get_attention_heatmaps

    def counted(self, image):
        calls.append((self.name, image.shape))
        return original(self, image)

    monkeypatch.setattr(FeatherFace, "get_attention_heatmaps", counted)
    out = tmp_path / "stats.json"
    args = ["--data", str(tiny["data"]), "--weights-dir", str(tiny["weights"]), "--out", str(out),
            "--models", "cbam", "eca_cbam_parallel", "none", "--device", "cpu", "--resamples", "50"]
    assert main(args) == 0
    report = load_report(out)
    gt = load_wider_gt(tiny["data"] / "ground_truth")
    n = sum(im.num_faces > 0 for im in gt.images)
    assert report["dataset"] == "synthetic" and report["num_images"] == n
    assert report["models"] == ["cbam", "eca_cbam_parallel"] and report["skipped_models"] == ["none"]
    assert sorted(c[0] for c in calls) == ["cbam"] * n + ["eca_cbam_parallel"] * n  # one pass per image and model
    assert set(report["weights"]) == {"cbam", "eca_cbam_parallel", "none"}

    rows = {(r["model"], r["level"], r["mask"], r["metric"]): r for r in report["rows"]}
    assert len(rows) == 2 * len(ALL_LEVELS) * len(MASK_KINDS) * len(METRICS)
    # Chance level: the same boxes for every model, level and mask, and equal to a direct count.
    areas = {round(r["mean"], 12) for k, r in rows.items() if k[3] == "area_in_boxes"}
    assert len(areas) == 1
    expected = []
    for im in gt.images:
        if im.num_faces:
            import cv2

            h, w = cv2.imread(str(tiny["data"] / "val" / "images" / im.event / f"{im.name}.jpg")).shape[:2]
            expected.append(box_union(im.boxes, h, w).mean())
    assert areas.pop() == pytest.approx(np.mean(expected), abs=1e-12)
    # The hybrid mask averaged over channels is the spatial mask times a constant: scale-free metrics agree.
    for model in ("cbam", "eca_cbam_parallel"):
        for level in ALL_LEVELS:
            for metric in ("energy_in_boxes", "pointing_game", "entropy"):
                s, h = rows[(model, level, "spatial", metric)], rows[(model, level, "hybrid", metric)]
                assert s["mean"] == pytest.approx(h["mean"], abs=1e-5), (model, level, metric)
            e = rows[(model, level, "spatial", "energy_in_boxes")]
            assert 0 <= e["ci_low"] <= e["mean"] <= e["ci_high"] <= 1
    assert {p["verdict"] for p in report["pairs"]} <= {"higher", "lower", "indistinguishable"}

    # Page helpers read the same report.
    table = stats_table(report, "P3", "hybrid")
    assert len(table) == 2 and table["seeds"].tolist() == [1, 1]
    assert table["mask energy in face boxes"].str.fullmatch(r"[0-9.]+ \[[0-9.]+, [0-9.]+\]").all()
    assert len(pair_table(report, "P3", "hybrid", ["energy_in_boxes"])) == 1
    fig = stats_figure(report, "stage2", "spatial")
    assert len(fig.data) == 2 and fig.data[0].name == "CBAM baseline"


def test_cli_errors_are_clear(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.json"
    assert exit_status(main, ["--data", str(tmp_path / "missing"), "--weights-dir", str(tiny["weights"]),
                              "--out", str(out), "--models", "cbam"]) == 2
    assert "argument --data: " in (err := capsys.readouterr().err) and "missing': folder not found" in err
    (tmp_path / "notes.txt").write_text("no checkpoint here")
    assert main(["--data", str(tiny["data"]), "--weights-dir", str(tmp_path), "--out", str(out),
                 "--models", "cbam"]) == 2
    assert "no checkpoint for 'cbam'" in capsys.readouterr().err
    assert main(["--data", str(tiny["data"]), "--weights-dir", str(tiny["weights"]), "--out", str(out),
                 "--models", "none"]) == 2
    assert "attention masks" in capsys.readouterr().err
    assert not out.exists()


def test_load_report_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AttentionStatsError, match="unreadable"):
        load_report(bad)
    bad.write_text(json.dumps({"rows": [{"model": "cbam"}], "dataset": "synthetic"}))
    with pytest.raises(AttentionStatsError, match="lacks"):
        load_report(bad)
    with pytest.raises(AttentionStatsError, match="unreadable"):
        load_report(tmp_path / "absent.json")


def test_seeds_are_averaged_per_image_and_their_spread_reported(tiny: dict[str, Path]) -> None:
    one, two = realistic_model("cbam", seed=0), realistic_model("cbam", seed=1)
    kwargs = {"data": tiny["data"], "resamples": 30, "progress": False}
    single = {(r["level"], r["mask"], r["metric"]): r for r in attention_stats({"cbam": one}, **kwargs)["rows"]}
    other = {(r["level"], r["mask"], r["metric"]): r for r in attention_stats({"cbam": [two]}, **kwargs)["rows"]}
    both = attention_stats({"cbam": [one, two], "none": build_model("none")}, **kwargs)
    assert both["seeds"] == {"cbam": 2} and both["skipped_models"] == ["none"]
    assert stats_table(both, "P4", "spatial")["pointing game (max in a box)"].str.contains(" sd ").all()
    for r in both["rows"]:
        key = (r["level"], r["mask"], r["metric"])
        a, b = single[key]["mean"], other[key]["mean"]
        assert r["seeds"] == 2 and single[key]["seeds"] == 1 and single[key]["seed_sd"] is None
        # Every image has a value here, so the mean of per-image seed means is the mean of the seeds' means.
        assert r["mean"] == pytest.approx((a + b) / 2, abs=1e-9), key
        assert r["seed_sd"] == pytest.approx(abs(a - b) / np.sqrt(2), abs=1e-9), key


def test_cli_all_seeds_averages_every_seed_of_a_model(tiny: dict[str, Path], tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    for seed in (0, 1):
        save_checkpoint(weights / f"cbam_s{seed}.pth", realistic_model("cbam", seed=seed))
    out = tmp_path / "stats.json"
    args = ["--data", str(tiny["data"]), "--weights-dir", str(weights), "--out", str(out), "--models", "cbam",
            "--device", "cpu", "--resamples", "20", "--all-seeds"]
    assert main(args) == 0
    report = load_report(out)
    assert report["seeds"] == {"cbam": 2}
    assert [Path(w["path"]).name for w in report["weights"]["cbam"]] == ["cbam_s0.pth", "cbam_s1.pth"]
    assert {r["seeds"] for r in report["rows"]} == {2}
    assert main(args[:-1]) == 0  # without --all-seeds: the newest file alone
    assert load_report(out)["seeds"] == {"cbam": 1}
