"""`retinaface_mnet` goes through every CLI like the other models (predict, evaluate, latency, results), and
is shown against its published numbers; the Heatmaps page leaves it out with a note."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from core.checkpoint import save_checkpoint
from core.factory import build_model
from core.synth.generate import generate_dataset
from dashboard.logic.heatmaps import models_without_masks, skipped_models_note
from dashboard.logic.model_summary import parameter_table, summary_table
from eval.results import main as results_main
from eval.verdicts.reference import reference_frame
from eval.verdicts.tables import combined_table, vs_reference
from eval.widerface.predict import main as predict_main
from eval.widerface.protocol import main as widerface_main

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "retinaface_mnet"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rf")
    data = generate_dataset(root / "data", num_train=0, num_val=3, seed=7, min_size=64, max_size=112)
    weights = root / "weights" / f"{NAME}.pth"
    save_checkpoint(weights, build_model(NAME), epoch=2, seed=0)
    return {"root": root, "data": data, "weights": weights}


def test_predict_then_evaluate(tiny, tmp_path, capsys):
    pred = tmp_path / "pred"
    assert predict_main(["--network", NAME, "--trained-model", str(tiny["weights"]), "--data", str(tiny["data"]),
                         "--out", str(pred), "--device", "cpu", "--top-k", "0", "--keep-top-k", "0"]) == 0
    assert len(list(pred.glob("*/*.txt"))) == 3
    meta = json.loads((pred / ".predict.json").read_text())
    assert meta["network"] == NAME and (meta["top_k"], meta["keep_top_k"], meta["nms"]) == (0, 0, "pixel")
    out = tmp_path / "ap.json"
    assert widerface_main(["--pred", str(pred), "--gt", str(tiny["data"] / "ground_truth"), "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["ap"]) == {"easy", "medium", "hard"}


def test_results_command_includes_it_without_a_heatmap_figure(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["--data", str(tiny["data"]), "--weights-dir", str(tiny["weights"].parent), "--out", str(out),
            "--models", NAME, "--device", "cpu", "--size", "64", "64", "--rounds", "2", "--warmup", "1"]
    assert results_main(args) == 0
    table = pd.read_csv(out / "comparison_table.csv")
    assert table["model"].tolist() == [NAME] and table["params"].tolist() == [426_608]
    assert sorted(pd.read_csv(out / "latency_benchmark.csv")["model"]) == ["none", NAME]
    assert list(out.glob("eval/*.json")) and not list(out.glob(f"**/*{NAME}*.png"))
    assert "no heatmap figure" in capsys.readouterr().out
    reference = pd.read_csv(out / "reference_results.csv").set_index("model")
    assert reference.loc[NAME, ["easy", "medium", "hard"]].tolist() == [90.70, 88.16, 73.82]


def test_measured_widerface_row_is_set_against_the_published_one():
    measured = pd.DataFrame([{"model": NAME, "display_name": "x", "dataset": "widerface", "easy": 90.0,
                              "medium": 88.0, "hard": 75.0, "mAP": 84.333, "params": 426_608, "latency_ms": 5.0,
                              "seed": 0, "epochs": 250, "weights": "w"}])
    ref = reference_frame()
    table = combined_table(measured, ref)
    assert (table["model"] == NAME).sum() == 2  # the measured row and the published one
    from eval.verdicts.tables import aggregate_seeds

    versus = vs_reference(aggregate_seeds(measured), ref)
    row = versus[(versus["model"] == NAME) & (versus["against"] == "published")].iloc[0]
    assert row["easy"] == pytest.approx(90.0 - 90.70) and row["hard"] == pytest.approx(75.0 - 73.82)


def test_models_page_rows_and_heatmaps_note():
    summary = summary_table((NAME, "cbam")).set_index("model")
    assert summary.loc[NAME, "params"] == summary.loc[NAME, "published_params"] == 426_608
    assert summary.loc[NAME, "published_mAP"] == pytest.approx(84.23)
    parts = parameter_table((NAME,)).set_index("part")["params"]
    assert parts["FPN (RetinaFace, 64 ch)"] == 103_040 and parts.sum() == 426_608
    assert models_without_masks() == ["none", NAME]
    note = skipped_models_note()
    assert "RetinaFace-mnet0.25 (baseline) (`retinaface_mnet`)" in note and "no attention blocks" in note


def test_latency_cli_times_it(tmp_path):
    from eval.latency.timing import main as latency_main

    out = tmp_path / "latency.csv"
    assert latency_main(["--models", NAME, "none", "--size", "64", "64", "--rounds", "2", "--warmup", "1",
                         "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    rows = pd.read_csv(out).set_index("model")
    assert set(rows.index) == {NAME, "none"} and rows.loc[NAME, "median_ms"] > 0
    assert rows.loc[NAME, "runs"] == 2 and rows.loc[NAME, "input_h"] == 64
