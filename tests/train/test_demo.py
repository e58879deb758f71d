"""The shipped demo artefacts are coherent with their manifest, and the demo builder's guard rails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import train.study.run as study
from core.checkpoint import load_checkpoint
from core.config import COMPARED_MODELS
from core.lab.artifacts import COMPARISON_COLUMNS, find_runs
from eval.runs.results_csv import read_results_csv
from eval.runs.study_progress import study_progress
from train.demo import main, parse_args, study_args

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"


def test_shipped_demo_matches_its_manifest():
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert manifest["dataset"] == "synthetic" and "not WIDERFace" in manifest["note"]
    models, seeds = manifest["models"], manifest["seeds"]
    assert sorted(models) == sorted(COMPARED_MODELS) and len(seeds) >= 3  # every spread and verdict has data
    expected = sorted((m, s) for m in models for s in seeds)
    table = read_results_csv(DEMO / "results" / "comparison_table.csv", COMPARISON_COLUMNS)
    assert set(table["dataset"]) == {"synthetic"}
    assert sorted(zip(table["model"], table["seed"], strict=True)) == expected  # one row per run
    by_run = table.set_index(["model", "seed"])
    assert sorted((r["model"], r["seed"]) for r in manifest["results"]) == expected
    for row in manifest["results"]:
        assert by_run.loc[(row["model"], row["seed"]), "easy"] == pytest.approx(row["easy"])
    for model, seed in expected:
        path = DEMO / "weights" / f"{model}_s{seed}.pth"
        net, meta = load_checkpoint(path, expected_name=model)
        assert meta["epoch"] == manifest["epochs"] and meta["args"]["seed"] == seed
        assert meta["args"]["img_size"] == manifest["img_size"] and path.stat().st_size < 3_000_000
    runs, warnings = find_runs(DEMO / "runs")
    assert not warnings
    assert sorted((r.model, r.seed) for r in runs) == expected
    assert {r.dataset for r in runs} == {"synthetic"}
    assert all(list(r.path.glob("events.out.tfevents.*")) for r in runs)
    progress = study_progress(DEMO / "runs")  # the study that built it: every run done, every epoch reached
    assert progress.complete and set(progress.table["epochs"]) == {manifest["epochs"]}
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in DEMO.iterdir() if p.is_dir()}
    assert sizes == manifest["shipped_bytes"] and sum(sizes.values()) < 40_000_000


def test_demo_is_a_study_preset_with_the_recorded_settings(tmp_path):
    (tmp_path / "data").mkdir()  # the demo makes its synthetic set before the study parses --data
    (tmp_path / "data" / "manifest.json").write_text("{}")
    args = parse_args(["--out", str(tmp_path), "--epochs", "3", "--img-size", "128", "--seeds", "4", "5",
                       "--lr-steps", "2", "--data", str(tmp_path / "data")])
    argv = study_args(args)
    parsed, train_flags = study.build_parser().parse_known_args(argv)
    assert parsed.models == list(COMPARED_MODELS) and parsed.seeds == [4, 5] and parsed.executor == "local"
    assert parsed.out == tmp_path and parsed.name == "runs"  # runs land in <out>/runs/<model>_s<seed>
    plan = study.make_plan(parsed, train_flags)
    command = " ".join(plan.command("eca_cbam_parallel", 5))
    assert "--network eca_cbam_parallel" in command and "--seed 5" in command and "--max-epoch 3" in command
    assert "--img-size 128" in command and "--device cpu" in command and "--lr-steps 2 " in command
    assert "--resume auto" in command  # a killed demo build continues where it stopped


def test_eval_only_needs_an_existing_demo(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "nothing"), "--eval-only", "--from", str(tmp_path / "none")])
    assert stop.value.code == 2 and "argument --from: " in capsys.readouterr().err  # refused while parsing
    (tmp_path / "not a demo").mkdir()
    (tmp_path / "not a demo" / "notes.txt").write_text("x")
    with pytest.raises(SystemExit, match="needs an existing demo"):
        main(["--out", str(tmp_path / "nothing"), "--eval-only", "--from", str(tmp_path / "not a demo")])


def test_shipped_latency_rows_come_from_their_kept_runs():
    """The demo's latency summary is reproducible from latency_runs.csv: same session, rounds and paired overheads."""
    from core.lab.artifacts import LATENCY_COLUMNS, LATENCY_RUN_COLUMNS
    from eval.verdicts.latency_ci import paired_difference, verdict

    summary = read_results_csv(DEMO / "results" / "latency_benchmark.csv", LATENCY_COLUMNS)
    runs = read_results_csv(DEMO / "results" / "latency_runs.csv", LATENCY_RUN_COLUMNS)
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert summary["session"].nunique() == 1 and set(runs["session"]) == set(summary["session"])
    assert (summary["runs"] == manifest["latency"]["rounds"]).all()
    assert (summary["threads"] == manifest["latency"]["threads"]).all()
    assert sorted(summary["model"]) == sorted([*COMPARED_MODELS, "none"])
    for row in summary.itertuples():
        d = paired_difference(runs, row.model, "none")
        assert row.overhead_vs_none_ms == pytest.approx(d.median_ms)
        assert d.rounds == row.runs and row.overhead_verdict == verdict(row.overhead_ci_low_ms, row.overhead_ci_high_ms)
        assert row.overhead_ci_low_ms <= row.overhead_vs_none_ms <= row.overhead_ci_high_ms
        assert row.median_ci_low_ms <= row.median_ms <= row.median_ci_high_ms
