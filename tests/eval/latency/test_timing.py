"""Latency: interleaved rotating rounds, every run kept, CSV rows with CIs and paired overheads vs "none",
threads fixed and recorded, malformed CSVs left untouched."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from core.factory import build_model
from core.lab.artifacts import LATENCY_COLUMNS, LATENCY_REQUIRED, LATENCY_RUN_COLUMNS, ResultsFileError
from eval.deploy.bn_fold import prepare_for_inference
from eval.latency.timing import main, measure, run_latency, runs_csv_for


class Recorder(torch.nn.Module):
    """Records the order in which the interleaved models run."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return self.conv(x)


def test_measure_interleaves_with_rotating_order_and_keeps_every_run():
    log: list[str] = []
    models = {n: Recorder(n, log) for n in ("a", "b", "c")}
    calls: list[tuple[int, int]] = []
    runs = measure(models, (8, 8), rounds=4, warmup=2, device="cpu",
                   progress_callback=lambda done, total: calls.append((done, total)))
    assert log[:3] == ["a", "b", "c"] and log[3:6] == ["b", "c", "a"]  # warm-up rounds rotate too
    assert log[6:9] == ["c", "a", "b"] and log[9:12] == ["a", "b", "c"]
    assert len(log) == 3 * 6 and calls[-1] == (6, 6) and len(calls) == 6
    assert list(runs.columns) == ["round", "position", "model", "ms"]
    assert len(runs) == 3 * 4 and (runs["ms"] > 0).all()  # warm-up not kept
    assert all(sorted(g) == ["a", "b", "c"] for _, g in runs.groupby("round")["model"])
    first = runs[runs["round"] == 0].sort_values("position")["model"].tolist()
    assert first == ["c", "a", "b"]  # round 0 is the third round overall


def test_channels_last_model_is_accepted():
    model = prepare_for_inference(build_model("eca_cbam"), channels_last=True)
    assert (measure({"eca_cbam": model}, (48, 64), rounds=1, warmup=0, device="auto")["ms"] > 0).all()


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"warmup": -1}, {"batch": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        measure({"none": build_model("none")}, (32, 32), **{"rounds": 1, "warmup": 0, **kwargs})
    with pytest.raises(ValueError, match="no model"):
        measure({}, (32, 32))


def test_run_latency_rows_runs_csv_threads_and_append(tmp_path):
    csv = tmp_path / "latency_benchmark.csv"
    before = torch.get_num_threads()
    rows = run_latency(["eca_cbam", "none"], (48, 48), rounds=12, warmup=1, device="cpu", out_csv=csv, threads=1)
    assert torch.get_num_threads() == before  # restored after the session
    assert [r["model"] for r in rows] == ["eca_cbam", "none"]
    by = {r["model"]: r for r in rows}
    assert by["none"]["overhead_vs_none_ms"] == 0 and by["none"]["overhead_verdict"] == "indistinguishable"
    assert all(r["threads"] == 1 and r["runs"] == 12 for r in rows)
    eca = by["eca_cbam"]
    assert eca["median_ci_low_ms"] <= eca["median_ms"] <= eca["median_ci_high_ms"]
    assert eca["overhead_ci_low_ms"] <= eca["overhead_vs_none_ms"] <= eca["overhead_ci_high_ms"]
    assert eca["overhead_verdict"] in ("slower", "faster", "indistinguishable")

    frame = pd.read_csv(csv)
    assert tuple(frame.columns) == LATENCY_COLUMNS
    assert frame["optimized"].tolist() == [True, True] and (frame["device"] == "cpu").all()
    runs = pd.read_csv(runs_csv_for(csv))
    assert tuple(runs.columns) == LATENCY_RUN_COLUMNS and len(runs) == 24
    assert runs["session"].nunique() == 1 and runs["session"].iloc[0] == frame["session"].iloc[0]
    # The summary's overhead is the median of the per-round differences of the kept runs.
    wide = runs.pivot(index="round", columns="model", values="ms")
    assert eca["overhead_vs_none_ms"] == pytest.approx((wide["eca_cbam"] - wide["none"]).median())
    assert eca["median_ms"] == pytest.approx(wide["eca_cbam"].median())

    run_latency(["cbam"], (48, 48), rounds=1, warmup=0, device="cpu", out_csv=csv, optimize=False)
    frame = pd.read_csv(csv)
    assert len(frame) == 3 and math.isnan(frame["overhead_vs_none_ms"].iloc[2])  # no "none" in that run
    assert math.isnan(frame["median_ci_low_ms"].iloc[2])  # one run: no CI
    assert len(pd.read_csv(runs_csv_for(csv))) == 25


def test_older_summary_file_is_extended_not_refused(tmp_path):
    csv = tmp_path / "latency_benchmark.csv"
    old = {c: 1 for c in LATENCY_REQUIRED} | {"model": "cbam", "date": "2026-01-01", "device": "cpu"}
    pd.DataFrame([old], columns=list(LATENCY_REQUIRED)).to_csv(csv, index=False)
    run_latency(["none"], (32, 32), rounds=1, warmup=0, device="cpu", out_csv=csv)
    frame = pd.read_csv(csv)
    assert tuple(frame.columns) == LATENCY_COLUMNS and frame["model"].tolist() == ["cbam", "none"]
    assert math.isnan(frame["overhead_ci_low_ms"].iloc[0])


@pytest.mark.parametrize("which", ["summary", "runs"])
def test_malformed_csv_raises_before_timing_and_is_untouched(tmp_path, capsys, which):
    csv = tmp_path / "latency_benchmark.csv"
    bad = csv if which == "summary" else runs_csv_for(csv)
    bad.write_text("model,median\ncbam,1\n")
    before = bad.read_bytes()
    with pytest.raises(ResultsFileError, match="missing columns"):
        run_latency(["none"], (32, 32), rounds=1, warmup=0, device="cpu", out_csv=csv)
    assert main(["--models", "none", "--size", "32", "32", "--rounds", "1", "--warmup", "0", "--out", str(csv)]) == 2
    assert "missing columns" in capsys.readouterr().err
    assert bad.read_bytes() == before
    assert not (csv if which == "runs" else runs_csv_for(csv)).exists()


def test_unknown_model_and_bad_threads_are_refused(tmp_path):
    with pytest.raises(KeyError, match="unknown model"):
        run_latency(["resnet"], (32, 32), rounds=1, warmup=0, device="cpu")
    with pytest.raises(ValueError, match="threads"):
        run_latency(["none"], (32, 32), rounds=1, warmup=0, device="cpu", threads=0)
