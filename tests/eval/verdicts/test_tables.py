"""eval.verdicts.tables and .conclusion: seed aggregation, deltas per dataset, bad CSVs, PR/attribute data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.lab.artifacts import COMPARISON_COLUMNS, LATENCY_COLUMNS, LATENCY_REQUIRED, TARGETS
from dashboard.logic.results_figures import attribute_figure, pr_figure, style_combined, style_deltas
from eval.verdicts.conclusion import build_conclusion
from eval.verdicts.reference import reference_frame, write_reference
from eval.verdicts.results_files import (
    load_comparison,
    load_eval_records,
    load_latency,
    load_latency_runs,
    load_reference,
)
from eval.verdicts.tables import (
    aggregate_seeds,
    attribute_pivot,
    attribute_table,
    combined_table,
    dataset_label,
    delta_table,
    deltas,
    latest_latency,
    mean_std_table,
    vs_reference,
)

SYN = dataset_label("synthetic")
PARAMS = {"cbam": 488664, "eca_cbam": 476345, "eca_cbam_parallel": 476345, "none": 475735}
# (dataset, model) -> [(seed, easy, medium, hard)]
ROWS = {
    ("synthetic", "cbam"): [(0, 80.0, 70.0, 50.0), (1, 82.0, 72.0, 52.0)],
    ("synthetic", "eca_cbam"): [(0, 79.0, 69.0, 49.0), (1, 81.0, 71.0, 51.0)],
    ("synthetic", "eca_cbam_parallel"): [(0, 90.0, 80.0, 60.0), (1, 90.5, 80.5, 60.5)],
    ("widerface", "cbam"): [(0, 92.0, 90.0, 78.0)],
    ("widerface", "eca_cbam"): [(0, 86.0, 84.0, 78.5)],
    ("widerface", "eca_cbam_parallel"): [(0, 93.0, 91.0, 79.0)],
}


def comparison_rows() -> list[dict]:
    rows = []
    for (dataset, model), seeds in ROWS.items():
        for seed, easy, medium, hard in seeds:
            rows.append({"model": model, "display_name": model, "params": PARAMS[model], "easy": easy,
                         "medium": medium, "hard": hard, "mAP": (easy + medium + hard) / 3, "latency_ms": 20.0,
                         "latency_device": "cpu", "dataset": dataset, "dataset_path": f"data/{dataset}",
                         "weights": f"runs/{model}_s{seed}/weights/Final.pth", "epochs": 10, "seed": seed,
                         "date": "2026-01-01T00:00:00"})
    return rows


def eval_payload(model: str, dataset: str, scale: float) -> dict:
    recall = np.linspace(0, 0.9 * scale, 11).tolist()
    precision = np.linspace(1, 0.5, 11).tolist()
    one = {"ap": 0.8 * scale, "num_faces": 100, "precision": precision, "recall": recall}
    breakdown = {"occlusion": {"0": {"ap": 0.9 * scale, "num_faces": 60}, "1": {"ap": 0.5, "num_faces": 30},
                               "2": {"ap": 0.2, "num_faces": 10}},
                 "scale": {"small": {"ap": 0.4, "num_faces": 50}, "medium": {"ap": 0.9, "num_faces": 40},
                           "large": {"ap": 0.95, "num_faces": 10}}}
    return {"model": model, "dataset": dataset, "weights": f"runs/{model}/Final.pth",
            "evaluation": {"ap": {"easy": 0.8 * scale, "medium": 0.8 * scale, "hard": 0.8 * scale},
                           "settings": {"easy": one, "medium": one, "hard": one}, "breakdown": breakdown}}


def latency_rows() -> list[dict]:
    base = {"date": "2026-01-01T00:00:00", "device": "cpu", "device_name": "cpu (2 threads)", "threads": 2,
            "torch_version": "2.14", "input_h": 640, "input_w": 640, "batch": 1, "runs": 50, "warmup": 10,
            "optimized": True, "p90_ms": 0, "std_ms": 1.0}
    times = {"cbam": 30.0, "eca_cbam": 25.0, "eca_cbam_parallel": 26.0, "none": 24.0}
    return [base | {"model": m, "mean_ms": t, "median_ms": t, "fps": 1000 / t, "overhead_vs_none_ms": t - 24.0,
                    "median_ci_low_ms": t - 0.3, "median_ci_high_ms": t + 0.3,
                    "overhead_ci_low_ms": t - 24.5, "overhead_ci_high_ms": t - 23.5, "session": "s1",
                    "overhead_verdict": "slower" if t - 24.5 > 0 else "indistinguishable"}
            for m, t in times.items()]


def make_results_root(root: Path) -> Path:
    """A complete results folder: comparison (2 datasets, seeds), reference, latency, eval JSONs."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(comparison_rows(), columns=list(COMPARISON_COLUMNS)).to_csv(root / "comparison_table.csv",
                                                                            index=False)
    write_reference(root / "reference_results.csv")
    pd.DataFrame(latency_rows(), columns=list(LATENCY_COLUMNS)).to_csv(root / "latency_benchmark.csv", index=False)
    (root / "eval").mkdir(exist_ok=True)
    for i, model in enumerate(("cbam", "eca_cbam", "eca_cbam_parallel")):
        for dataset in ("synthetic", "widerface"):
            path = root / "eval" / f"{model}__{dataset}__run-Final-0000000{i}.json"
            path.write_text(json.dumps(eval_payload(model, dataset, 0.8 + 0.05 * i), sort_keys=True))
    return root


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return make_results_root(tmp_path / "results")


def test_seed_aggregation_and_deltas_stay_within_a_dataset(results: Path):
    loaded = load_comparison(results)
    assert loaded.errors == [] and loaded.notes == []
    agg = aggregate_seeds(loaded.frame).set_index(["dataset", "model"])
    cbam = agg.loc[("synthetic", "cbam")]
    assert cbam["n"] == 2 and cbam["seeds"] == "0, 1"
    assert cbam["easy_mean"] == pytest.approx(81.0) and cbam["easy_std"] == pytest.approx(np.sqrt(2))
    assert np.isnan(agg.loc[("widerface", "cbam"), "easy_std"])  # one run: no spread

    d = deltas(aggregate_seeds(loaded.frame)).set_index(["dataset", "comparison", "metric"])
    syn = d.loc[("synthetic", "parallel − sequential", "easy")]
    assert syn["delta"] == pytest.approx(90.25 - 80.0)
    welch = stats.ttest_ind([90.0, 90.5], [79.0, 81.0], equal_var=False).confidence_interval(0.95)
    assert (syn["ci_low"], syn["ci_high"]) == pytest.approx((welch.low, welch.high))
    assert syn["verdict"] == "higher"  # CI +0.13 to +20.37
    close = d.loc[("synthetic", "parallel − CBAM", "hard")]  # 60.25 - 51 = 9.25, but two seeds a side
    assert close["ci_low"] < 0 < close["ci_high"] and close["verdict"] == "indistinguishable"
    wider = d.loc[("widerface", "parallel − CBAM", "mAP")]
    assert wider["delta"] == pytest.approx((93 + 91 + 79) / 3 - (92 + 90 + 78) / 3)
    assert wider["verdict"] == "single seed" and np.isnan(wider["ci_low"])  # unknown, never claimed
    assert set(d.index.get_level_values("dataset")) == {"synthetic", "widerface"}

    table = delta_table(deltas(aggregate_seeds(loaded.frame)))
    assert table["dataset"].tolist().count(SYN) == 2
    assert table.iloc[0]["easy"] == "+10.25 [+0.13, +20.37] higher"
    assert table.iloc[1]["hard"].endswith("indistinguishable")
    assert "(single seed: no CI)" in table.iloc[-1]["mAP"]
    html = style_deltas(table).to_html()
    assert html.count("font-weight: bold") >= 1 and "#555" in html


def delta_cell_styles(table: pd.DataFrame) -> dict[tuple[int, int], dict[str, str]]:
    """(row, column) -> CSS properties, read back from the HTML the Styler renders."""
    html = style_deltas(table).set_uuid("t").to_html()
    styles: dict[tuple[int, int], dict[str, str]] = {}
    for selectors, body in re.findall(r"((?:#T_t_row\d+_col\d+,?\s*)+)\{([^}]*)\}", html):
        props = dict(tuple(part.strip() for part in prop.split(":")) for prop in body.split(";") if ":" in prop)
        for row, col in re.findall(r"row(\d+)_col(\d+)", selectors):
            styles[(int(row), int(col))] = props
    return styles


def test_delta_colours_follow_the_verdict() -> None:
    table = pd.DataFrame({"dataset": ["d"] * 4, "comparison": ["c"] * 4,
                          "easy": ["+10.25 [+0.13, +20.37] higher", "-3.00 [-5.00, -1.00] lower",
                                   "+1.00 [-2.00, +4.00] indistinguishable", "+0.50 (single seed: no CI)"],
                          "medium": ["-0.25 [-0.50, -0.01] lower", np.nan, "+1.00 [+0.50, +1.50] higher", ""],
                          "hard": ["+1.00 (single seed: no CI)"] * 4, "mAP": ["+1.00 (single seed: no CI)"] * 4})
    styles = delta_cell_styles(table)
    higher = {"color": "#0a7a2f", "font-weight": "bold"}
    lower = {"color": "#b00020", "font-weight": "bold"}
    grey = {"color": "#555"}
    assert [styles.get((row, 2)) for row in range(4)] == [higher, lower, grey, grey]
    assert [styles.get((row, 3)) for row in range(4)] == [lower, None, higher, grey]  # missing cell: unstyled
    assert (0, 0) not in styles and (0, 1) not in styles  # label columns are never coloured


def test_a_lower_parallel_is_reported_as_lower(results: Path):
    frame = load_comparison(results).frame
    frame.loc[(frame["dataset"] == "synthetic") & (frame["model"] == "eca_cbam_parallel"), "easy"] = [70.0, 70.1]
    frame.loc[(frame["dataset"] == "synthetic") & (frame["model"] == "cbam"), "easy"] = [80.0, 80.1]
    d = deltas(aggregate_seeds(frame)).set_index(["dataset", "comparison", "metric"])
    assert d.loc[("synthetic", "parallel − CBAM", "easy"), "verdict"] == "lower"


def test_combined_table_labels_every_row(results: Path):
    table = combined_table(load_comparison(results).frame, load_reference(results).frame)
    sources = set(table["source"])
    assert {f"measured · {SYN}", "measured · WIDERFace val", "published · WIDERFace val (paper)",
            "target · WIDERFace val"} == sources
    html = style_combined(table).to_html()
    assert "font-style: italic" in html and "font-weight: bold" not in html  # no "best" without a CI
    assert "NOT WIDERFace" in SYN and dataset_label("widerface") == "WIDERFace val"
    ref = vs_reference(aggregate_seeds(load_comparison(results).frame), load_reference(results).frame)
    assert set(ref["against"]) == {"published", "target"}  # WIDERFace rows only
    par = ref[(ref["model"] == "eca_cbam_parallel") & (ref["against"] == "target")].iloc[0]
    assert par["easy"] == pytest.approx(93.0 - TARGETS["easy"])
    assert len(ref) == 2 + 3  # cbam and eca_cbam have published rows; all three have targets
    assert mean_std_table(aggregate_seeds(load_comparison(results).frame))["easy"].iloc[0] == "81.00 ± 1.41"


@pytest.mark.parametrize("content,expected", [
    ("", "empty"),
    ("model,easy\ncbam,90\n", "missing columns"),
    ('model,"easy\n', "not a readable CSV"),
])
def test_bad_comparison_csv_is_an_error_not_an_exception(tmp_path: Path, content: str, expected: str):
    (tmp_path / "comparison_table.csv").write_text(content)
    loaded = load_comparison(tmp_path)
    assert loaded.frame.empty and len(loaded.errors) == 1 and expected in loaded.errors[0]


def test_missing_and_odd_values(tmp_path: Path, results: Path):
    missing = load_comparison(tmp_path / "nowhere")
    assert missing.missing and missing.errors == [] and "not found" in missing.notes[0]
    frame = pd.read_csv(results / "comparison_table.csv")
    frame["easy"] = frame["easy"].astype(object)
    frame.loc[0, "easy"] = "ninety"
    frame.to_csv(results / "comparison_table.csv", index=False)
    loaded = load_comparison(results)
    assert len(loaded.frame) == len(frame) - 1 and "non-numeric" in loaded.notes[0]

    (results / "reference_results.csv").write_text("kind,model\nx,y\n")
    ref = load_reference(results)
    assert "missing columns" in ref.errors[0] and len(ref.frame) == len(reference_frame())
    (results / "reference_results.csv").unlink()
    assert len(load_reference(results).frame) == len(reference_frame())

    (results / "latency_benchmark.csv").write_text("date,model\n1,2\n")
    assert "missing columns" in load_latency(results).errors[0]


def test_eval_records_pr_curves_and_attributes(results: Path):
    (results / "eval" / "broken__synthetic__x.json").write_text("{not json")
    records, warnings = load_eval_records(results)
    assert len(records) == 6 and len(warnings) == 1 and "broken" in warnings[0]
    syn = [r for r in records if r.dataset == "synthetic"]
    fig = pr_figure(syn)
    assert len(fig.data) == 3 * 3 and sum(bool(t.showlegend) for t in fig.data) == 3
    table = attribute_table(syn)
    assert set(table["attribute"]) == {"occlusion", "scale"}
    occ = table[(table["model"] == "cbam") & (table["attribute"] == "occlusion") & (table["value"] == "0")]
    assert occ["ap"].iloc[0] == pytest.approx(90 * 0.8) and occ["value_label"].iloc[0] == "none"
    assert attribute_pivot(table).shape == (6, 3 + 3)
    assert len(attribute_figure(table).data) == 3 * 2  # one bar trace per evaluation and attribute panel


def test_latest_latency_is_the_last_session_or_configuration():
    frame = pd.DataFrame(latency_rows() + [latency_rows()[0] | {"input_h": 320, "median_ms": 9.0, "session": "z"}])
    assert latest_latency(frame)["model"].tolist() == ["cbam"]
    older = pd.DataFrame(latency_rows() + [latency_rows()[0] | {"input_h": 320, "median_ms": 9.0, "session": None}])
    assert latest_latency(older.drop(columns="session"))["model"].tolist() == ["cbam"]
    assert latest_latency(pd.DataFrame(latency_rows()))["model"].tolist() == ["cbam", "eca_cbam",
                                                                              "eca_cbam_parallel", "none"]


def test_latency_files_old_and_new(results: Path):
    loaded = load_latency(results)
    assert loaded.errors == [] and loaded.frame["overhead_verdict"].tolist()[0] == "slower"
    old = pd.read_csv(results / "latency_benchmark.csv")[list(LATENCY_REQUIRED)]
    old.to_csv(results / "latency_benchmark.csv", index=False)
    loaded = load_latency(results)
    assert loaded.errors == [] and "before confidence intervals" in loaded.notes[0]
    assert loaded.frame["overhead_ci_low_ms"].isna().all() and (loaded.frame["overhead_verdict"] == "").all()
    runs = load_latency_runs(results)
    assert runs.missing and runs.frame.empty
    pd.DataFrame({"session": ["s"], "round": [0], "position": [0], "model": ["cbam"], "ms": ["fast"]}).to_csv(
        results / "latency_runs.csv", index=False)
    runs = load_latency_runs(results)
    assert runs.frame.empty and "non-numeric" in runs.notes[0]


def test_conclusion_from_full_and_empty_data(results: Path, tmp_path: Path):
    md = build_conclusion(results_root=results)
    assert SYN in md and "WIDERFace val" in md
    syn_acc = md.split(f"## Accuracy — {SYN}")[1].split("## ")[0]
    assert "95% CI +0.13 to +20.37" in syn_acc and "): higher" in syn_acc  # synthetic: 2 seeds each, Welch t
    assert "indistinguishable (CI includes 0)" in syn_acc  # parallel − CBAM: CI -0.87 to +19.37
    assert "no verdict: single seed, spread unknown" in md  # widerface: one run each
    assert "No recommendation on WIDERFace val" in md and "use it" not in md
    assert "ECA-CBAM parallel" in md and "latency" in md.lower()
    assert "## Missing data" in md
    syn = md.split(f"## Accuracy — {SYN}")[1].split("## ")[0]
    assert "not comparable" in syn

    empty = build_conclusion(results_root=tmp_path / "nothing")
    assert "No measured accuracy" in empty and "comparison_table.csv" in empty
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "comparison_table.csv").write_text("")
    bad = build_conclusion(results_root=tmp_path / "bad")
    assert "empty" in bad


def test_conclusion_with_a_single_model(results: Path):
    frame = pd.read_csv(results / "comparison_table.csv")
    frame[(frame["model"] == "cbam") & (frame["dataset"] == "synthetic")].to_csv(results / "comparison_table.csv",
                                                                                 index=False)
    md = build_conclusion(results_root=results)
    assert "Only CBAM baseline was evaluated" in md and "use it" not in md
    assert "no evaluation of ECA-CBAM sequential, ECA-CBAM parallel" in md
    assert "No WIDERFace val evaluation" in md


def test_attribute_order_is_natural_not_alphabetical(results: Path):
    records, _ = load_eval_records(results)
    table = attribute_table(records[:1])
    assert list(dict.fromkeys(table["attribute"])) == ["occlusion", "scale"]
    assert table[table["attribute"] == "scale"]["value"].tolist() == ["small", "medium", "large"]


def test_conclusion_reports_each_model_as_a_multiple_of_the_baseline(results: Path):
    """With the RetinaFace baseline timed in the latest session, the latency section states every other
    model's paired per-round ratio to it, with its CI; without the baseline it says nothing of the kind."""
    rows = latency_rows() + [latency_rows()[-1] | {"model": "retinaface_mnet", "median_ms": 20.0}]
    pd.DataFrame(rows, columns=list(LATENCY_COLUMNS)).to_csv(results / "latency_benchmark.csv", index=False)
    rng = np.random.default_rng(0)
    load = rng.gamma(2.0, 4.0, 40)
    factor = {"cbam": 1.5, "eca_cbam": 1.25, "eca_cbam_parallel": 1.3, "none": 1.2, "retinaface_mnet": 1.0}
    runs = [{"session": "s1", "round": r, "position": i, "model": m, "ms": f * (20.0 + load[r])}
            for r in range(40) for i, (m, f) in enumerate(factor.items())]
    pd.DataFrame(runs).to_csv(results / "latency_runs.csv", index=False)
    md = build_conclusion(results_root=results)
    line = next(li for li in md.splitlines() if "as a multiple of RetinaFace" in li)
    assert "CBAM baseline 1.50x (95% CI 1.50-1.50)" in line and "ECA-CBAM sequential 1.25x" in line
    assert "(torch;" in line
    pd.DataFrame(runs[:0] + [r for r in runs if r["model"] != "retinaface_mnet"]).to_csv(
        results / "latency_runs.csv", index=False)
    assert "as a multiple of" not in build_conclusion(results_root=results)
