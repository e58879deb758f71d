"""Results command end to end on a tiny synthetic set; CSV schemas, upsert, reference rows, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from core.checkpoint import CheckpointError, save_checkpoint
from core.config import COMPARED_MODELS
from core.factory import build_model
from core.lab.artifacts import COMPARISON_COLUMNS, LATENCY_COLUMNS, REFERENCE_COLUMNS, TARGETS, ResultsFileError
from core.lab.result_paths import eval_json_path, figure_path, weights_tag
from core.synth.generate import generate_dataset
from eval.results import detect_dataset, main, upsert_rows
from eval.runs.weights import WeightsError, resolve_all_weights, resolve_weights
from eval.verdicts.reference import DEFAULT_PATH, load_reference, reference_frame, write_reference
from tests.conftest import exit_status

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Three small synthetic val images and random checkpoints of the compared models in runs layout."""
    root = tmp_path_factory.mktemp("results")
    data = generate_dataset(root / "data", num_train=0, num_val=3, seed=5, min_size=64, max_size=112)
    weights = root / "runs"
    for i, name in enumerate(COMPARED_MODELS):
        save_checkpoint(weights / f"{name}_s{i}" / "weights" / "Final.pth", build_model(name), epoch=4, seed=i)
    image = root / "face.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8))
    return {"root": root, "data": data, "weights": weights, "image": image}


def _args(tiny: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--data", str(tiny["data"]), "--weights-dir", str(tiny["weights"]), "--out", str(out), "--device", "cpu",
            "--size", "64", "64", "--rounds", "2", "--warmup", "1", "--image", str(tiny["image"]), *extra]


@pytest.mark.slow
def test_results_command_end_to_end_and_update_not_duplicate(tiny, tmp_path):
    out = tmp_path / "results"
    assert main(_args(tiny, out)) == 0

    table = pd.read_csv(out / "comparison_table.csv")
    assert tuple(table.columns) == COMPARISON_COLUMNS
    assert table["model"].tolist() == list(COMPARED_MODELS)
    assert (table["dataset"] == "synthetic").all()
    assert table[["easy", "medium", "hard"]].stack().between(0, 100).all()
    np.testing.assert_allclose(table["mAP"], table[["easy", "medium", "hard"]].mean(axis=1), atol=1e-3)
    assert table["epochs"].tolist() == [4, 4, 4] and table["seed"].tolist() == [0, 1, 2]
    assert (table["latency_ms"] > 0).all()

    latency = pd.read_csv(out / "latency_benchmark.csv")
    assert tuple(latency.columns) == LATENCY_COLUMNS
    assert sorted(latency["model"]) == sorted([*COMPARED_MODELS, "none"])
    timed = pd.read_csv(out / "latency_runs.csv")  # every interleaved run, beside the summary
    assert len(timed) == 2 * 4 and set(timed["session"]) == set(latency["session"])
    reference = load_reference(out / "reference_results.csv")  # the third CSV, apart from measured rows
    assert set(reference["kind"]) == {"published", "target"}

    for row in table.itertuples():
        report = json.loads(eval_json_path(out, row.model, row.dataset, row.weights).read_text())
        assert report["weights"] == row.weights and report["ap_percent"]["easy"] == pytest.approx(row.easy, abs=1e-3)
        hard = report["evaluation"]["settings"]["hard"]
        assert len(hard["precision"]) == len(hard["recall"]) == 1000
        assert set(report["evaluation"]["breakdown"]) >= {"occlusion", "blur", "pose", "scale"}
        png = figure_path(out, row.model, row.dataset, row.weights)
        assert png.name == f"attention_heatmaps__{row.model}__synthetic__{weights_tag(row.weights)}.png"
        assert cv2.imread(str(png)) is not None

    # Mark every row, then re-run one model: only its row may lose the mark (timestamps of two quick
    # runs can be equal to the second, so they cannot tell a rewritten row from a kept one).
    marked = table.assign(date="2000-01-01T00:00:00+00:00")
    marked.to_csv(out / "comparison_table.csv", index=False)
    assert main(_args(tiny, out, "--models", "eca_cbam", "--no-figures")) == 0
    again = pd.read_csv(out / "comparison_table.csv")
    assert again["model"].tolist() == list(COMPARED_MODELS)  # replaced in place, not appended
    kept = again["model"] != "eca_cbam"
    pd.testing.assert_frame_equal(again[kept].reset_index(drop=True), marked[kept].reset_index(drop=True),
                                  check_dtype=False)  # fmt: skip
    assert again.loc[~kept, "date"].item() != "2000-01-01T00:00:00+00:00"
    assert len(pd.read_csv(out / "latency_benchmark.csv")) == 6  # latency rows are measurements: appended


def test_malformed_existing_csv_fails_fast_and_is_untouched(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    bad = out / "comparison_table.csv"
    bad.write_bytes(b"model,easy\n\"unterminated,1\n")
    before = bad.read_bytes()
    assert main(_args(tiny, out)) == 2
    assert "comparison_table.csv" in capsys.readouterr().err
    assert bad.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["comparison_table.csv"]  # nothing else was started


def test_missing_and_wrong_weights(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    missing = _args(tiny, out)[:2] + ["--weights-dir", str(tmp_path / "nothing")] + _args(tiny, out)[4:]
    assert exit_status(main, missing) == 2  # refused by the parser, before any work (issue 20)
    err = capsys.readouterr().err
    assert "--weights-dir" in err and "file or folder not found" in err and len(err.strip().splitlines()) == 1

    manifest = tmp_path / "weights.json"
    cbam = tiny["weights"] / "cbam_s0" / "weights" / "Final.pth"
    manifest.write_text(json.dumps({"cbam": str(cbam), "eca_cbam": str(cbam), "eca_cbam_parallel": "missing.pth"}))
    with pytest.raises(WeightsError, match="missing.pth"):
        resolve_weights(manifest, COMPARED_MODELS)
    args = _args(tiny, out, "--models", "cbam", "eca_cbam")
    args[3] = str(manifest)
    assert main(args) == 2
    assert "holds model 'cbam', but 'eca_cbam' was requested" in capsys.readouterr().err
    assert not out.exists()

    misnamed = tmp_path / "w" / "eca_cbam.pth"
    save_checkpoint(misnamed, build_model("cbam"))
    with pytest.raises(CheckpointError, match="its path says 'eca_cbam'"):
        resolve_weights(misnamed.parent, ["cbam"])
    with pytest.raises(WeightsError, match="no checkpoint for 'eca_cbam_parallel'"):
        resolve_weights(tiny["weights"] / "cbam_s0", ["eca_cbam_parallel"])


def test_all_seeds_one_row_per_run_and_one_figure_per_model(tiny, tmp_path):
    study = tmp_path / "study"
    for seed in (0, 1):  # a study folder: <model>_s<seed>/weights/{last,best,Final}.pth
        for name in ("last", "best", "Final"):
            save_checkpoint(study / f"cbam_s{seed}" / "weights" / f"{name}.pth", build_model("cbam"), epoch=3,
                            seed=seed)
    flat = tmp_path / "flat"  # the demo layout: weights/<model>_s<seed>.pth
    save_checkpoint(flat / "cbam_s7.pth", build_model("cbam"), epoch=2, seed=7)
    assert [p.name for _, p in resolve_all_weights(flat, ["cbam"])] == ["cbam_s7.pth"]
    assert [p.relative_to(study).as_posix() for _, p in resolve_all_weights(study, ["cbam"], "best")] == [
        "cbam_s0/weights/best.pth", "cbam_s1/weights/best.pth"]
    with pytest.raises(WeightsError, match="no checkpoint for 'none'"):
        resolve_all_weights(study, ["cbam", "none"])
    misnamed = tmp_path / "bad" / "none_s1.pth"
    save_checkpoint(misnamed, build_model("cbam"))
    with pytest.raises(CheckpointError, match="its path says 'none'"):
        resolve_all_weights(misnamed.parent, ["cbam"])

    out = tmp_path / "results"
    args = _args(tiny, out, "--models", "cbam", "--all-seeds", "--figures-per-model")
    args[args.index("--weights-dir") + 1] = str(study)
    assert main(args) == 0
    table = pd.read_csv(out / "comparison_table.csv")
    assert table["seed"].tolist() == [0, 1] and table["weights"].str.endswith("Final.pth").all()
    assert table["weights"].nunique() == 2 and (table["epochs"] == 3).all()
    assert len(list((out / "eval").glob("*.json"))) == 2 and len(list((out / "figures").glob("*.png"))) == 1


def test_missing_image_list_is_a_clear_error(tiny, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    args = _args(tiny, tmp_path / "results")
    args[1] = str(data)
    assert main(args) == 2
    assert "wider_val.txt" in capsys.readouterr().err


def test_dataset_label_from_manifest(tiny, tmp_path):
    assert detect_dataset(tiny["data"]) == "synthetic"
    assert detect_dataset(tmp_path) == "widerface"  # no manifest: the real thing
    with pytest.raises(ValueError, match="contradicts"):
        detect_dataset(tiny["data"], "widerface")


def test_upsert_replaces_same_key_in_place(tmp_path):
    csv = tmp_path / "t.csv"
    cols = ("model", "dataset", "weights", "easy")
    upsert_rows(csv, [{"model": "a", "dataset": "d", "weights": "w", "easy": 1.0},
                      {"model": "b", "dataset": "d", "weights": "w", "easy": 2.0}], cols)
    upsert_rows(csv, [{"model": "a", "dataset": "d", "weights": "w", "easy": 3.0},
                      {"model": "a", "dataset": "d", "weights": "w2", "easy": 4.0}], cols)
    frame = pd.read_csv(csv)
    assert frame[["weights", "easy"]].values.tolist() == [["w", 3.0], ["w", 2.0], ["w2", 4.0]]
    assert frame["model"].tolist() == ["a", "b", "a"]


def test_upsert_refuses_malformed_file(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("model,dataset\na,d\n")
    with pytest.raises(ResultsFileError, match="missing columns"):
        upsert_rows(csv, [{"model": "a", "dataset": "d", "weights": "w"}], ("model", "dataset", "weights"))
    assert csv.read_text() == "model,dataset\na,d\n"


def test_reference_rows_are_published_and_targets(tmp_path):
    path = write_reference(tmp_path / "reference_results.csv")
    frame = load_reference(path)
    assert tuple(frame.columns) == REFERENCE_COLUMNS
    published = frame[frame["kind"] == "published"].set_index("model")
    assert published.loc["cbam", ["params", "easy", "medium", "hard", "mAP", "latency_ms"]].tolist() == \
        [488664, 92.7, 90.7, 78.3, 87.2, 4.5]
    assert published.loc["eca_cbam", ["params", "easy", "medium", "hard", "mAP", "latency_ms"]].tolist() == \
        [476345, 85.8, 83.9, 78.3, 82.7, 4.1]
    # Pytorch_Retinaface README, mobilenet0.25 "Pytorch (original image scale)": 90.70 / 88.16 / 73.82
    assert published.loc["retinaface_mnet", ["params", "easy", "medium", "hard", "mAP"]].tolist() == \
        [426608, 90.70, 88.16, 73.82, 84.23]
    target = frame[frame["kind"] == "target"].iloc[0]
    assert {k: target[k] for k in TARGETS} == TARGETS


def test_committed_reference_csv_is_up_to_date():
    committed = load_reference(REPO / DEFAULT_PATH)
    expected = reference_frame()
    pd.testing.assert_frame_equal(committed, expected, check_dtype=False)


def test_reference_rejects_unknown_kind(tmp_path):
    path = tmp_path / "r.csv"
    frame = reference_frame()
    frame.loc[0, "kind"] = "measured"
    frame.to_csv(path, index=False)
    with pytest.raises(ResultsFileError, match="unknown kind"):
        load_reference(path)
