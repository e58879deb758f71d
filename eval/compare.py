"""Comparison logic behind the Results and Latency pages: tables, seed spread, deltas, PR curves.

Rules the pages rely on: a dataset is never pooled with another (deltas and seed statistics are
computed per dataset), synthetic rows always carry a visible label, published/target rows stay
apart from measured ones, and every bad file becomes a message instead of an exception.
AP values are percentages (comparison_table.csv and reference_results.csv both store percent).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.artifacts import (
    COMPARISON_COLUMNS,
    COMPARISON_CSV,
    EVAL_DIR,
    LATENCY_COLUMNS,
    LATENCY_CSV,
    LATENCY_REQUIRED,
    LATENCY_RUN_COLUMNS,
    LATENCY_RUNS_CSV,
    REFERENCE_COLUMNS,
    REFERENCE_CSV,
    TARGETS,
    ResultsFileError,
    dataset_label,
    read_results_csv,
)
from core.cli_paths import read_problem
from core.config import CBAM, PARALLEL, SEQUENTIAL, display_name, model_color, model_rank
from eval.roots import SourceError, confine, confined_files
from eval.seed_stats import difference_verdict, welch_from_summary

METRICS: tuple[str, ...] = ("easy", "medium", "hard", "mAP")
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




def _sort(frame: pd.DataFrame, *first: str) -> pd.DataFrame:
    keys = [*first, "_rank"]
    return (frame.assign(_rank=frame["model"].map(model_rank)).sort_values(keys, kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


# --------------------------------------------------------------------------- loading


@dataclass
class Loaded:
    """A table (possibly empty) plus what the page should say about it."""

    frame: pd.DataFrame
    errors: list[str] = field(default_factory=list)  # the file is unusable: st.error
    notes: list[str] = field(default_factory=list)  # worth knowing: st.warning / st.info
    missing: bool = False


def _numeric(frame: pd.DataFrame, columns: Iterable[str], path: Path, notes: list[str]) -> pd.DataFrame:
    """Coerce metric columns to numbers; rows with an unreadable value are dropped and counted."""
    frame = frame.copy()
    bad = pd.Series(False, index=frame.index)
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad |= values.isna() & frame[col].notna()
        frame[col] = values
    if bad.any():
        notes.append(f"{path}: {int(bad.sum())} row(s) with non-numeric metric values were skipped")
        frame = frame[~bad]
    return frame


def _refused(path: Path, root: Path | str) -> str | None:
    """Why `path` may not be read (a symlink or path resolving outside the results root, not a regular
    file), or None when it is fine or simply absent."""
    if not (path.is_symlink() or path.exists()):
        return None
    try:
        confine(path, root)
    except SourceError as exc:
        return str(exc)
    return None


def _read_table(path: Path, root: Path | str, columns: tuple[str, ...], required: tuple[str, ...],
                absent: str) -> pd.DataFrame | Loaded:
    """The validated CSV, or an empty `Loaded` (with `columns`) saying why there is none: refused path,
    absent file (note `absent`, missing=True) or unreadable file."""
    if refused := _refused(path, root):
        return Loaded(pd.DataFrame(columns=list(columns)), errors=[refused])
    if not path.is_file():
        return Loaded(pd.DataFrame(columns=list(columns)), missing=True, notes=[absent])
    try:
        return read_results_csv(path, required)
    except ResultsFileError as exc:
        return Loaded(pd.DataFrame(columns=list(columns)), errors=[str(exc)])


def load_comparison(results_root: Path | str) -> Loaded:
    """comparison_table.csv under the root, validated; errors/notes instead of exceptions."""
    path = Path(results_root) / COMPARISON_CSV
    frame = _read_table(path, results_root, COMPARISON_COLUMNS, COMPARISON_COLUMNS,
                        f"{path}: not found. Run `python -m eval.results --data DATA --weights-dir runs` "
                        "to evaluate the trained models.")
    if isinstance(frame, Loaded):
        return frame
    notes: list[str] = []
    frame = _numeric(frame, [*METRICS, "params", "latency_ms"], path, notes)
    frame["dataset"] = frame["dataset"].fillna("unknown").astype(str)
    frame["display_name"] = frame["display_name"].fillna(frame["model"].map(display_name))
    if frame.empty:
        notes.append(f"{path}: no rows yet")
    return Loaded(_sort(frame, "dataset"), notes=notes)


def load_reference(results_root: Path | str) -> Loaded:
    """reference_results.csv, or eval.reference's built-in rows when it is absent or unusable."""
    from eval.reference import KINDS, reference_frame

    path = Path(results_root) / REFERENCE_CSV
    if refused := _refused(path, results_root):
        return Loaded(reference_frame(), errors=[f"{refused}; using the built-in published/target rows instead"])
    if not path.is_file():
        return Loaded(reference_frame(), notes=[f"{path} not found: using the built-in published/target rows"])
    try:
        frame = read_results_csv(path, REFERENCE_COLUMNS)
    except ResultsFileError as exc:
        return Loaded(reference_frame(), errors=[f"{exc}; using the built-in published/target rows instead"])
    unknown = sorted(set(frame["kind"].astype(str)) - set(KINDS))
    if unknown:
        return Loaded(reference_frame(), errors=[f"{path}: unknown kind(s) {unknown}; using the built-in rows"])
    notes: list[str] = []
    return Loaded(_numeric(frame, [*METRICS, "params", "latency_ms"], path, notes), notes=notes)


def load_latency(results_root: Path | str) -> Loaded:
    """latency_benchmark.csv under the root (missing is normal: nothing benchmarked yet).

    Files written before the CI columns existed load with those columns blank (no verdicts).
    """
    path = Path(results_root) / LATENCY_CSV
    frame = _read_table(path, results_root, LATENCY_COLUMNS, LATENCY_REQUIRED,
                        f"{path}: not found (no latency saved yet)")
    if isinstance(frame, Loaded):
        return frame
    notes: list[str] = []
    if "overhead_ci_low_ms" not in frame.columns:
        notes.append(f"{path}: written before confidence intervals were recorded; its differences carry no verdict")
    frame = frame.reindex(columns=list(dict.fromkeys([*LATENCY_COLUMNS, *frame.columns])))
    frame = _numeric(frame, ["mean_ms", "median_ms", "p90_ms", "std_ms", "fps", "overhead_vs_none_ms",
                             "median_ci_low_ms", "median_ci_high_ms", "overhead_ci_low_ms", "overhead_ci_high_ms",
                             "load_avg_1m", "cpu_count"],
                     path, notes)
    frame["overhead_verdict"] = frame["overhead_verdict"].fillna("").astype(str)
    return Loaded(frame, notes=notes)


def load_latency_runs(results_root: Path | str) -> Loaded:
    """latency_runs.csv (every timed run, long format) under the root; missing for older results."""
    path = Path(results_root) / LATENCY_RUNS_CSV
    frame = _read_table(path, results_root, LATENCY_RUN_COLUMNS, LATENCY_RUN_COLUMNS,
                        f"{path}: not found (no per-run timings saved)")
    if isinstance(frame, Loaded):
        return frame
    notes: list[str] = []
    frame = _numeric(frame, ["round", "position", "ms"], path, notes)
    frame["session"] = frame["session"].astype(str)
    return Loaded(frame, notes=notes)


# --------------------------------------------------------------------------- tables


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


def style_combined(table: pd.DataFrame) -> Any:
    """Styler: synthetic rows tinted and italic; published/target rows grey, so no row can be mistaken for
    another kind. No "best" highlight: which model is better is the delta table's job, with CIs."""

    def row_style(row: pd.Series) -> list[str]:
        base = ""
        if str(row["source"]).startswith(("published", "target")):
            base = "color: #777;"
        elif row["dataset"] == "synthetic":
            base = "background-color: #fff4d6; font-style: italic;"
        return [base for _ in row.index]

    fmt = {m: "{:.2f}" for m in METRICS} | {"latency_ms": "{:.2f}", "params": "{:,.0f}", "seed": "{:.0f}",
                                            "epochs": "{:.0f}"}
    return table.style.apply(row_style, axis=1).format(fmt, na_rep="–")


def style_deltas(table: pd.DataFrame) -> Any:
    """Green when the parallel design is higher with a CI excluding 0, red when lower; grey otherwise."""

    def cell(value: Any) -> str:
        if not isinstance(value, str):
            return ""
        if value.endswith(" higher"):
            return "color: #0a7a2f; font-weight: bold;"
        if value.endswith(" lower"):
            return "color: #b00020; font-weight: bold;"
        return "color: #555;"

    return table.style.map(cell, subset=list(METRICS))


# --------------------------------------------------------------------------- eval JSON: PR curves, attributes


@dataclass(frozen=True)
class EvalRecord:
    """One results/eval/<model>__<dataset>__<tag>.json: PR curves per setting and per-attribute AP."""

    path: Path
    model: str
    dataset: str
    tag: str
    weights: str
    settings: dict[str, dict[str, Any]]
    breakdown: dict[str, dict[str, dict[str, Any]]]

    @property
    def label(self) -> str:
        return f"{display_name(self.model)} · {self.tag}"


def load_eval_records(results_root: Path | str) -> tuple[list[EvalRecord], list[str]]:
    """Every readable eval JSON under `<root>/eval/`; each unreadable one, or one resolving outside the
    results root (a symlink to a file elsewhere), gives a warning."""
    paths, warnings = confined_files(Path(results_root) / EVAL_DIR, "*.json", results_root)
    records = []
    for path in paths:
        try:
            records.append(parse_eval_record(path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.append(f"{path}: unreadable evaluation file ({read_problem(exc)}), skipped")
    return records, warnings


def parse_eval_record(path: Path, payload: Mapping[str, Any]) -> EvalRecord:
    """Accepts eval.results' files ({..., "evaluation": {...}}) and bare `WiderEvalResult.to_dict()` ones."""
    parts = path.stem.split("__")
    evaluation = payload.get("evaluation", payload)
    settings = evaluation["settings"]
    for name, s in settings.items():
        if len(s["precision"]) != len(s["recall"]):
            raise ValueError(f"setting {name}: precision and recall lengths differ")
    return EvalRecord(
        path=path,
        model=str(payload.get("model") or parts[0]),
        dataset=str(payload.get("dataset") or (parts[1] if len(parts) > 1 else "unknown")),
        tag=parts[2] if len(parts) > 2 else path.stem,
        weights=str(payload.get("weights") or ""),
        settings=dict(settings),
        breakdown=dict(evaluation.get("breakdown") or {}),
    )


def pr_figure(records: Sequence[EvalRecord]) -> go.Figure:
    """Precision-recall curves, one panel per setting, one line per evaluation file (one dataset at a time)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[s.capitalize() for s in SETTINGS], shared_yaxes=True)
    colors = px.colors.qualitative.D3
    for i, rec in enumerate(records):
        for j, setting in enumerate(SETTINGS, start=1):
            s = rec.settings.get(setting)
            if not s:
                continue
            recall, precision = np.asarray(s["recall"], dtype=float), np.asarray(s["precision"], dtype=float)
            fig.add_trace(go.Scatter(  # arrays, not lists: plotly checks a list element by element
                x=recall, y=precision, mode="lines", legendgroup=str(rec.path), showlegend=j == 1,
                name=f"{rec.label}", line={"color": colors[i % len(colors)]},
                hovertemplate=f"{rec.label}<br>{setting} AP {100 * s['ap']:.2f}%<br>"
                              "recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"),
                row=1, col=j)
    fig.update_xaxes(title_text="recall", range=[0, 1])
    fig.update_yaxes(title_text="precision", range=[0, 1.02], col=1)
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


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


def attribute_figure(table: pd.DataFrame) -> go.Figure:
    """Grouped bars per attribute value (one panel per attribute), colour = evaluation.

    Built trace by trace with graph_objects (plotly.express took seconds for a 15-run study's 75 traces)."""
    attrs = list(dict.fromkeys(table["attribute"]))
    fig = make_subplots(rows=1, cols=max(1, len(attrs)), subplot_titles=attrs, shared_yaxes=True,
                        horizontal_spacing=0.03)
    colors = px.colors.qualitative.Plotly
    traces, cols = [], []
    for i, (label, by_label) in enumerate(table.groupby("label", sort=False)):
        for j, attr in enumerate(attrs, start=1):
            g = by_label[by_label["attribute"] == attr]
            traces.append(go.Bar(x=g["value_label"].to_numpy(), y=g["ap"].to_numpy(), name=str(label),
                                 legendgroup=str(label), showlegend=j == 1, marker_color=colors[i % len(colors)],
                                 customdata=g["num_faces"].to_numpy(),
                                 hovertemplate=f"{label}<br>%{{x}}: %{{y:.2f}}% AP<br>%{{customdata}} faces"
                                               "<extra></extra>"))
            cols.append(j)
    if traces:
        fig.add_traces(traces, rows=[1] * len(traces), cols=cols)
    fig.update_yaxes(title_text="AP (%)", col=1)
    fig.update_layout(barmode="group", height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.3})
    return fig


# --------------------------------------------------------------------------- live latency



def latency_display(rows: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader needs, CIs beside the values they qualify."""
    cols = ["model", "device_name", "backend", "threads", "input_h", "input_w", "batch", "runs", "warmup", "median_ms",
            "median_ci_low_ms", "median_ci_high_ms", "fps", "overhead_vs_none_ms", "overhead_ci_low_ms",
            "overhead_ci_high_ms", "overhead_verdict", "mean_ms", "p90_ms", "std_ms", "load_avg_1m", "cpu_count"]
    out = rows.reindex(columns=cols).copy()
    out.insert(1, "display_name", out["model"].map(display_name))
    return out


def latency_box_figure(times: Mapping[str, Sequence[float]]) -> go.Figure:
    """Box plot of per-run times per model (ms)."""
    fig = go.Figure()
    for model, t in times.items():
        fig.add_trace(go.Box(y=list(t), name=display_name(model), boxpoints="all", jitter=0.4, pointpos=0,
                             marker={"size": 4, "color": model_color(model)}))
    fig.update_layout(yaxis_title="ms per forward pass", height=380, showlegend=False,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


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
