"""The shipped demo artefacts are coherent with their manifest, and the demo builder's guard rails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.artifacts import COMPARISON_COLUMNS, find_runs, read_results_csv
from core.checkpoint import load_checkpoint
from core.config import COMPARED_MODELS
from train.demo import main, parse_args, train_command

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def test_shipped_demo_matches_its_manifest():
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert manifest["dataset"] == "synthetic" and "not WIDERFace" in manifest["note"]
    table = read_results_csv(DEMO / "results" / "comparison_table.csv", COMPARISON_COLUMNS)
    assert set(table["dataset"]) == {"synthetic"}
    by_model = table.set_index("model")
    for row in manifest["results"]:
        assert by_model.loc[row["model"], "easy"] == pytest.approx(row["easy"])
    for model in COMPARED_MODELS:
        net, meta = load_checkpoint(DEMO / "weights" / f"{model}.pth", expected_name=model)
        assert meta["epoch"] == manifest["epochs"]
        assert (DEMO / "weights" / f"{model}.pth").stat().st_size < 3_000_000
    runs, warnings = find_runs(DEMO / "runs")
    assert not warnings
    assert sorted(r.model for r in runs) == sorted(COMPARED_MODELS)
    assert {r.dataset for r in runs} == {"synthetic"}
    assert all(list(r.path.glob("events.out.tfevents.*")) for r in runs)


def test_train_command_carries_the_recorded_settings(tmp_path):
    args = parse_args(["--out", str(tmp_path), "--epochs", "3", "--img-size", "128"])
    cmd = train_command(args, "eca_cbam_parallel", tmp_path / "runs")
    joined = " ".join(cmd)
    assert "--network eca_cbam_parallel" in joined and "--max-epoch 3" in joined and "--img-size 128" in joined
    assert "--resume auto" in joined  # a killed demo build continues where it stopped


def test_eval_only_needs_an_existing_demo(tmp_path):
    with pytest.raises(SystemExit, match="needs an existing demo"):
        main(["--out", str(tmp_path / "nothing"), "--eval-only"])
