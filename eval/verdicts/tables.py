"""Comparison logic behind the Results and Latency pages: tables, seed spread, deltas, PR curves.

Rules the pages rely on: a dataset is never pooled with another (deltas and seed statistics are
computed per dataset), synthetic rows always carry a visible label, published/target rows stay
apart from measured ones, and every bad file becomes a message instead of an exception.
AP values are percentages (comparison_table.csv and reference_results.csv both store percent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.config import CBAM, PARALLEL, SEQUENTIAL, display_name
from core.lab.artifacts import (
    TARGETS,
    dataset_label,
)
from eval.verdicts.results_files import METRICS, EvalRecord, _sort
from eval.verdicts.seeds import difference_verdict, welch_from_summary

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
PAIRS: tuple[tuple[str, str, str], ...] = (
    (PARALLEL, SEQUENTIAL, "parallel − sequential"),
    (PARALLEL, CBAM, "parallel − CBAM"),
)
ATTRIBUTE_LABELS: dict[str, dict[str, str]] = {
    "occlusion": {"0": "none", "1": "partial", "2": "heavy"},
    "blur": {"0": "clear", "1": "normal", "2": "heavy"},
    "pose": {"0": "typical", "1": "atypical"},
    "illumination": {"0": "normal", "1": "extreme"},
    "scale": {"small": "small (<50 px)", "medium": "medium (50-300 px)", "large": "large (>300 px)"},
}


def combined_table(measured: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Measured rows (one per evaluation) then published and target rows, each with a `source` label."""
    cols = ["source", "dataset", "model", "display_name", *METRICS, "params", "latency_ms", "seed", "epochs",
            "weights"]
    m = measured.assign(source="measured · " + measured["dataset"].map(dataset_label))
    r = reference.assign(
        source=reference["kind"].map({"published": "published · WIDERFace val (paper)",
                                      "target": "target · WIDERFace val"}).fillna(reference["kind"]),
        dataset="widerface")
    parts = [f.reindex(columns=cols) for f in (m, r) if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def aggregate_seeds(measured: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model): n rows, the seeds, and mean/std/min/max of each metric (std: sample, n >= 2)."""
    cols = ["dataset", "model", "display_name", "n", "seeds", "params", "latency_ms"]
    cols += [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "min", "max")]
    if measured.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (dataset, model), g in measured.groupby(["dataset", "model"], sort=False):
        row: dict[str, Any] = {
            "dataset": dataset, "model": model, "display_name": display_name(model), "n": len(g),
            "seeds": ", ".join(str(int(s)) if _is_number(s) else "?" for s in g["seed"]),
            "params": g["params"].dropna().iloc[0] if g["params"].notna().any() else np.nan,
            "latency_ms": g["latency_ms"].mean(),
        }
        for m in METRICS:
            v = g[m].astype(float)
            row |= {f"{m}_mean": v.mean(), f"{m}_std": v.std() if v.count() > 1 else np.nan,
                    f"{m}_min": v.min(), f"{m}_max": v.max()}
        rows.append(row)
    return _sort(pd.DataFrame(rows, columns=cols), "dataset")


def _is_number(value: Any) -> bool:
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def mean_std_table(agg: pd.DataFrame) -> pd.DataFrame:
    """Display form of `aggregate_seeds`: "mean ± std" strings (just the value for a single run)."""
    out = agg[["dataset", "display_name", "n", "seeds"]].copy()
    out.insert(0, "dataset", out.pop("dataset").map(dataset_label))
    for m in METRICS:
        out[m] = [f"{mu:.2f} ± {sd:.2f}" if _is_number(sd) else (f"{mu:.2f}" if _is_number(mu) else "–")
                  for mu, sd in zip(agg[f"{m}_mean"], agg[f"{m}_std"], strict=True)]
    return out


def deltas(agg: pd.DataFrame) -> pd.DataFrame:
    """Parallel vs sequential and parallel vs CBAM, per dataset and metric, never across datasets.

    `delta` = mean_a − mean_b over seeds with a 95% Welch t interval (`ci_low`, `ci_high`, from the
    seeds' mean, std and count) and `verdict`: "higher" / "lower" when the CI excludes 0,
    "indistinguishable" when it includes it, "single seed" when either side has one run (no CI).
    """
    cols = ["dataset", "comparison", "metric", "a", "b", "a_mean", "b_mean", "delta", "ci_low", "ci_high", "verdict",
            "n_a", "n_b"]
    rows = []
    for dataset, g in agg.groupby("dataset", sort=False):
        by_model = g.set_index("model")
        for a, b, label in PAIRS:
            if a not in by_model.index or b not in by_model.index:
                continue
            ra, rb = by_model.loc[a], by_model.loc[b]
            for m in METRICS:
                delta, low, high = welch_from_summary(rb[f"{m}_mean"], rb[f"{m}_std"], int(rb["n"]),
                                                      ra[f"{m}_mean"], ra[f"{m}_std"], int(ra["n"]))
                rows.append({"dataset": dataset, "comparison": label, "metric": m, "a": a, "b": b,
                             "a_mean": ra[f"{m}_mean"], "b_mean": rb[f"{m}_mean"], "delta": delta, "ci_low": low,
                             "ci_high": high, "verdict": difference_verdict(low, high), "n_a": ra["n"],
                             "n_b": rb["n"]})
    return pd.DataFrame(rows, columns=cols)


def delta_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, comparison): per metric "delta [CI] verdict" (or "delta (single seed)")."""
    if d.empty:
        return pd.DataFrame(columns=["dataset", "comparison", *METRICS])

    def cell(r: pd.Series) -> str:
        if r["verdict"] == "single seed":
            return f"{r['delta']:+.2f} (single seed: no CI)"
        return f"{r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] {r['verdict']}"

    text = d.assign(cell=d.apply(cell, axis=1))
    out = text.pivot_table(index=["dataset", "comparison"], columns="metric", values="cell", aggfunc="first",
                           sort=False).reset_index()
    out["dataset"] = out["dataset"].map(dataset_label)
    return out.reindex(columns=["dataset", "comparison", *METRICS])


def vs_reference(agg: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """WIDERFace means minus the published row of the same model and minus the targets (synthetic: none)."""
    cols = ["model", "display_name", "against", *METRICS]
    wider = agg[agg["dataset"] == "widerface"]
    rows = []
    published = reference[reference["kind"] == "published"].set_index("model")
    for _, r in wider.iterrows():
        if r["model"] in published.index:
            p = published.loc[r["model"]]
            p = p.iloc[0] if isinstance(p, pd.DataFrame) else p
            rows.append({"model": r["model"], "display_name": r["display_name"], "against": "published",
                         **{m: r[f"{m}_mean"] - float(p[m]) for m in METRICS}})
        rows.append({"model": r["model"], "display_name": r["display_name"], "against": "target",
                     **{m: r[f"{m}_mean"] - TARGETS[m] for m in METRICS}})
    return pd.DataFrame(rows, columns=cols)


def attribute_table(records: Sequence[EvalRecord]) -> pd.DataFrame:
    """Long table of the hard-set attribute breakdown: AP in percent and the number of faces counted."""
    rows = []
    for rec in records:
        for attr, values in rec.breakdown.items():
            for value, r in values.items():
                rows.append({"model": rec.model, "display_name": display_name(rec.model), "dataset": rec.dataset,
                             "tag": rec.tag, "label": rec.label, "attribute": attr, "value": str(value),
                             "value_label": ATTRIBUTE_LABELS.get(attr, {}).get(str(value), str(value)),
                             "ap": 100.0 * float(r["ap"]), "num_faces": int(r.get("num_faces", 0))})
    table = pd.DataFrame(rows, columns=["model", "display_name", "dataset", "tag", "label", "attribute", "value",
                                        "value_label", "ap", "num_faces"])
    # The JSON files store keys sorted; show attributes and values in their natural order instead.
    natural = [(attr, value) for attr, values in ATTRIBUTE_LABELS.items() for value in values]
    order = {key: i for i, key in enumerate(natural)}
    rank = [order.get((a, v), len(order)) for a, v in zip(table["attribute"], table["value"], strict=True)]
    return table.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)


def attribute_pivot(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = attribute value, columns = evaluation: the AP breakdown side by side."""
    if table.empty:
        return table
    return table.pivot_table(index=["attribute", "value_label", "num_faces"], columns="label", values="ap",
                             aggfunc="first", sort=False).reset_index()


def latest_latency(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the last session (older files without sessions: most recent row per model for the
    configuration, i.e. device, input and batch, measured last)."""
    if frame.empty:
        return frame
    f = frame.assign(_order=range(len(frame)))
    last = f.iloc[-1]
    if "session" in f.columns and isinstance(last["session"], str) and last["session"]:
        return _sort(f[f["session"] == last["session"]].drop(columns="_order"))
    same = f[(f["device_name"] == last["device_name"]) & (f["input_h"] == last["input_h"])
             & (f["input_w"] == last["input_w"]) & (f["batch"] == last["batch"])]
    return _sort(same.drop_duplicates("model", keep="last").drop(columns="_order"))
