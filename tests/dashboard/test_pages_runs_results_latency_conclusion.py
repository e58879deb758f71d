"""AppTest drives the Convergence, Results, Latency and Conclusion pages on temporary fixtures."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import core.lab.roots
from tests.eval.runs.test_convergence import event_file, write_run
from tests.eval.verdicts.test_tables import SYN, make_results_root

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    results = make_results_root(tmp_path / "results")
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs, f"cbam_s{seed}", "cbam", seed, 6)
        write_run(runs, f"par_s{seed}", "eca_cbam_parallel", seed, 6)
    write_run(runs, "seq_wider", "eca_cbam", 0, 4, dataset="widerface")
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(results))
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(runs))
    # The env vars are resolved as in the app; only the shipped demo (runs, weights) is left out, so that the
    # assertions do not depend on what assets/demo holds (or on a demo being trained while tests run).
    real = core.lab.roots.resolve_roots

    def without_demo(argv, env, *args):
        roots = real(argv, env, *args)
        return dataclasses.replace(roots, runs=roots.runs[:1], weights=(tmp_path / "weights",),
                                   demo=tmp_path / "no_demo")

    monkeypatch.setattr("dashboard.common.resolve_roots", without_demo)
    return results, runs


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page(f"views/{name}.py").run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_convergence_widgets(roots):
    at = run_page("convergence")
    assert at.title[0].value == "Convergence" and not at.error and not at.warning
    assert len(at.get("plotly_chart")) == 3 + 1  # train loss, LR and val AP hard preselected, stability
    at.slider(key="conv_smoothing").set_value(0.9)
    at.toggle(key="conv_log").set_value(True)
    at.toggle(key="conv_aggregate").set_value(True).run()
    assert not at.exception
    at.radio(key="conv_band").set_value("std")
    at.multiselect(key="conv_metrics").set_value(["Learning rate"])
    at.selectbox(key="conv_stab_metric").set_value("Val AP hard (%)")
    at.slider(key="conv_last_n").set_value(3).run()
    assert not at.exception and len(at.get("plotly_chart")) == 1 + 1
    stability = at.dataframe[1].value
    assert len(stability) == 5 and "reached_at" in stability.columns
    at.multiselect(key="conv_datasets").set_value(["widerface"]).run()
    assert not at.exception and len(at.dataframe[1].value) == 1


def test_convergence_bad_and_empty_runs(roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _, runs = roots
    path = event_file(runs / "cbam_s1")
    path.write_bytes(path.read_bytes()[:-9])
    at = run_page("convergence")
    assert "1 warning(s)" in texts(at.warning) and len(at.get("plotly_chart")) >= 1

    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(tmp_path / "no_runs_here"))
    at = run_page("convergence")
    assert "No training runs" in texts(at.info)


def test_results_page(roots):
    at = run_page("results")
    assert at.title[0].value == "Results" and not at.error
    assert len(at.get("download_button")) == 2
    assert len(at.get("plotly_chart")) == 2  # PR curves + attributes
    assert at.radio(key="res_dataset").value == "widerface"
    at.radio(key="res_dataset").set_value("synthetic").run()
    assert not at.exception and SYN in texts(at.subheader)


@pytest.mark.parametrize("content", ["", "model,easy\ncbam,1\n", 'a,"b\n'])
def test_results_page_bad_csv(roots, content: str):
    results, _ = roots
    (results / "comparison_table.csv").write_text(content)
    (results / "reference_results.csv").write_text("kind\npublished\n")
    at = run_page("results")
    assert "Measured results unusable" in texts(at.error)
    assert "built-in" in texts(at.warning)
    assert len(at.get("plotly_chart")) == 2  # the rest of the page still works


def test_results_page_missing_folder(roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(tmp_path / "absent"))
    at = run_page("results")
    assert not at.error and "not found" in texts(at.info) and "No evaluation files" in texts(at.info)


def test_latency_live_run_and_save(roots):
    results, _ = roots
    at = run_page("latency")
    assert at.number_input(key="lat_rounds").value == 120 and at.checkbox(key="lat_none").value
    assert at.checkbox(key="lat_baseline").value  # the RetinaFace baseline is timed beside the others
    at.number_input(key="lat_rounds").set_value(10)
    at.number_input(key="lat_warmup").set_value(1)
    at.number_input(key="lat_threads").set_value(1)
    at.number_input(key="lat_h").set_value(64)
    at.number_input(key="lat_w").set_value(64)
    at.button(key="lat_start").click().run(timeout=120)
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 1 and len(at.metric) == 5
    assert "RetinaFace-mnet0.25 (baseline)" in [m.label for m in at.metric]
    assert "Precision: the 95% CIs of the paired differences to none" in texts(at.info)
    assert "vs none (" in " ".join(str(m.delta) for m in at.metric)
    ratios = next(t for t in texts(at.markdown).split("\n") if "× RetinaFace-mnet0.25 (baseline)" in t)
    assert "CBAM baseline" in ratios and "x (95% CI" in ratios  # each model as a multiple of the baseline
    at.selectbox(key="lat_pair_a").set_value("cbam")
    at.selectbox(key="lat_pair_b").set_value("eca_cbam").run()
    assert "CBAM baseline is" in texts(at.markdown) and "10 paired rounds" in texts(at.markdown)
    before = len(pd.read_csv(results / "latency_benchmark.csv"))
    at.button(key="lat_save").click().run()
    assert "Appended 5 rows" in texts(at.success) and "50 timed runs" in texts(at.success)
    saved = pd.read_csv(results / "latency_benchmark.csv")
    assert len(saved) == before + 5 and (saved["input_h"].iloc[-5:] == 64).all() and (saved["runs"].iloc[-1] == 10)
    assert (saved["threads"].iloc[-5:] == 1).all() and saved["overhead_ci_low_ms"].iloc[-5:].notna().all()
    assert "retinaface_mnet" in set(saved["model"].iloc[-5:])
    assert len(pd.read_csv(results / "latency_runs.csv")) == 50
    assert at.button(key="lat_save").disabled
    at = run_page("latency")  # the saved session's pairs can be compared again
    assert at.selectbox(key="lat_session").value == saved["session"].iloc[-1]
    assert "paired rounds" in texts(at.markdown)


def test_latency_onnxruntime_backend(roots):
    at = run_page("latency")
    assert at.radio(key="lat_backend").value == "torch"
    at.radio(key="lat_backend").set_value("onnxruntime")
    at.checkbox(key="lat_none").uncheck()
    at.checkbox(key="lat_baseline").uncheck()
    for key, value in (("lat_rounds", 3), ("lat_warmup", 1), ("lat_threads", 1), ("lat_h", 64), ("lat_w", 64)):
        at.number_input(key=key).set_value(value)
    at.button(key="lat_start").click().run(timeout=300)
    assert not at.exception and not at.error
    at.button(key="lat_save").click().run()
    saved = pd.read_csv(roots[0] / "latency_benchmark.csv")
    assert (saved["backend"].iloc[-3:] == "onnxruntime").all() and (saved["threads"].iloc[-3:] == 1).all()


def test_latency_bad_earlier_rows(roots):
    results, _ = roots
    (results / "latency_benchmark.csv").write_text("date,model\nx,y\n")
    at = run_page("latency")
    assert "missing columns" in texts(at.error)


def test_conclusion_page(roots):
    at = run_page("conclusion")
    md = texts(at.markdown)
    assert "FeatherFace Lab — conclusion" in md and SYN in md
    assert "Training runs: 5" in md
    assert "## Hypotheses" in md and md.count("**inconclusive**") == 6  # synthetic/single-seed fixture data
    assert "| (d) |" in md and "no dataset with both designs' val AP" in md  # the runs were read
    assert len(at.get("download_button")) == 1


def test_conclusion_page_bad_csv(roots):
    results, _ = roots
    (results / "comparison_table.csv").write_text("")
    at = run_page("conclusion")
    assert "Accuracy file unusable" in texts(at.error)
    assert "could not be read" in texts(at.markdown)


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure (as JSON) of the chart with this key, x/y arrays decoded (plotly sends numpy arrays
    as base64 typed arrays)."""
    (element,) = [e for e in at.get("plotly_chart") if e.key == key]
    fig = json.loads(element.proto.spec)
    for trace in fig["data"]:
        for axis in ("x", "y"):
            v = trace.get(axis)
            if isinstance(v, dict) and "bdata" in v:
                trace[axis] = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return fig


def test_convergence_shows_the_source_log_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Issue 17 item 4: the source's real 350-epoch log is listed first with its origin and drawn on the
    loss and LR panels; the synthetic runs follow, labelled synthetic."""
    from tests.eval.runs.test_convergence import source_run

    runs = tmp_path / "runs"
    source_run(runs)
    write_run(runs, "cbam_s0", "cbam", 0, 6)
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(runs))
    real = core.lab.roots.resolve_roots
    monkeypatch.setattr("dashboard.common.resolve_roots", lambda argv, env, *a: dataclasses.replace(
        real(argv, env, *a), runs=(runs,)))
    at = run_page("convergence")
    table = at.dataframe[0].value
    assert table["run"].tolist() == ["runs/featherface_eca_cbam", "runs/cbam_s0"]
    assert table["origin"].iloc[0] == "trained on WIDER FACE by fokouarnaud/FeatherFace"  # as run.json says
    assert "fokouarnaud/FeatherFace" in texts(at.caption)
    assert at.multiselect(key="conv_metrics").value == ["Train loss (total)", "Learning rate", "Val AP hard (%)"]
    loss = chart(at, "conv_fig_Train loss (total)")["data"]
    source = [t for t in loss if "featherface_eca_cbam" in t.get("hovertemplate", "")]
    (line,) = source
    assert len(line["x"]) == 350 and line["x"][-1] == 350  # the 350-epoch curve, every epoch drawn
    assert loss.index(line) <= 1  # drawn first (after its faded raw line)
    lr = chart(at, "conv_fig_Learning rate")["data"]
    assert any("featherface_eca_cbam" in t.get("hovertemplate", "") for t in lr)
    at.multiselect(key="conv_metrics").set_value(["Train loss per step"]).run()
    (step_line,) = [t for t in chart(at, "conv_fig_Train loss per step")["data"]
                    if "featherface_eca_cbam" in t.get("hovertemplate", "")]
    assert step_line["x"][-1] > 140_000 and not at.exception


def test_convergence_opens_on_mean_of_seeds_for_a_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runs = tmp_path / "study"
    for model in ("cbam", "eca_cbam", "eca_cbam_parallel"):
        for seed in range(3):
            write_run(runs, f"{model}_s{seed}", model, seed, 4)
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(runs))
    real = core.lab.roots.resolve_roots
    monkeypatch.setattr("dashboard.common.resolve_roots", lambda argv, env, *a: dataclasses.replace(
        real(argv, env, *a), runs=(runs,)))
    at = run_page("convergence")
    assert at.toggle(key="conv_aggregate").value is True
    legend = [t["name"] for t in chart(at, "conv_fig_Train loss (total)")["data"] if t.get("showlegend") is not False]
    assert len(legend) == 3 and all("(n=3)" in name for name in legend)
    assert at.dataframe[0].value["run"].iloc[0] == "study/cbam_s0"
