"""Figures and styled tables of the Results and Latency pages (plotly, pandas Styler), built from eval's tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.config import display_name, model_color
from eval.verdicts.results_files import METRICS, EvalRecord
from eval.verdicts.tables import SETTINGS


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
