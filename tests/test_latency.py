"""Latency: stats sanity with tiny runs, CSV rows and overhead vs "none", malformed CSV left untouched."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.artifacts import LATENCY_COLUMNS, ResultsFileError
from core.factory import build_model
from core.inference import prepare_for_inference
from eval.latency import benchmark_model, main, run_latency


def test_benchmark_stats_are_sane_and_progress_is_reported():
    calls: list[tuple[int, int]] = []
    stats = benchmark_model(build_model("none"), (64, 64), batch=1, runs=3, warmup=1, device="cpu",
                            progress_callback=lambda done, total: calls.append((done, total)))
    d = stats.to_dict()
    assert set(d) == {"mean_ms", "median_ms", "p90_ms", "std_ms", "fps", "runs", "warmup", "batch"}
    assert all(d[k] > 0 for k in ("mean_ms", "median_ms", "p90_ms", "fps"))
    assert d["std_ms"] >= 0 and d["p90_ms"] >= d["median_ms"]
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(stats.times_ms) == 3 and all(t > 0 for t in stats.times_ms)  # warm-up run not included
    assert stats.median_ms == pytest.approx(float(np.median(stats.times_ms)))


def test_channels_last_model_is_accepted():
    model = prepare_for_inference(build_model("eca_cbam"), channels_last=True)
    assert benchmark_model(model, (48, 64), runs=1, warmup=0, device="auto").median_ms > 0


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"warmup": -1}, {"batch": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        benchmark_model(build_model("none"), (32, 32), **{"runs": 1, "warmup": 0, **kwargs})


def test_run_latency_rows_overhead_and_append(tmp_path):
    csv = tmp_path / "latency_benchmark.csv"
    rows = run_latency(["eca_cbam", "none"], (64, 64), runs=2, warmup=1, device="cpu", out_csv=csv)
    assert [r["model"] for r in rows] == ["eca_cbam", "none"]
    by = {r["model"]: r for r in rows}
    assert by["none"]["overhead_vs_none_ms"] == 0
    assert by["eca_cbam"]["overhead_vs_none_ms"] == pytest.approx(by["eca_cbam"]["median_ms"] - by["none"]["median_ms"])
    frame = pd.read_csv(csv)
    assert tuple(frame.columns) == LATENCY_COLUMNS
    assert frame["optimized"].tolist() == [True, True] and (frame["device"] == "cpu").all()
    run_latency(["cbam"], (64, 64), runs=1, warmup=0, device="cpu", out_csv=csv, optimize=False)
    frame = pd.read_csv(csv)
    assert len(frame) == 3 and math.isnan(frame["overhead_vs_none_ms"].iloc[2])  # no "none" in that run


def test_malformed_csv_raises_before_timing_and_is_untouched(tmp_path, capsys):
    csv = tmp_path / "latency_benchmark.csv"
    csv.write_text("model,median\ncbam,1\n")
    before = csv.read_bytes()
    with pytest.raises(ResultsFileError, match="missing columns"):
        run_latency(["none"], (32, 32), runs=1, warmup=0, device="cpu", out_csv=csv)
    assert main(["--models", "none", "--size", "32", "32", "--runs", "1", "--warmup", "0", "--out", str(csv)]) == 2
    assert "missing columns" in capsys.readouterr().err
    assert csv.read_bytes() == before


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(KeyError, match="unknown model"):
        run_latency(["resnet"], (32, 32), runs=1, warmup=0, device="cpu")
