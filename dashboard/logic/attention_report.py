"""The Heatmaps page's quality report: an attention_stats JSON read back (confined to the results folder) as tables
and a figure."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.config import display_name, model_color
from core.io.cli_paths import read_problem
from core.lab.roots import SourceError, confine
from eval.attention.measure import AttentionStatsError
from eval.attention.metrics import METRIC_LABELS, METRICS


def load_report(path: Path | str, root: Path | str | None = None) -> dict[str, Any]:
    """A report written by this CLI, checked enough for the page; errors name the file. With `root`, a
    path resolving outside it (a symlink to a file elsewhere) is refused before anything is read."""
    path = Path(path)
    if root is not None:
        try:
            confine(path, root)
        except SourceError as exc:
            raise AttentionStatsError(str(exc)) from None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AttentionStatsError(f"{path}: unreadable attention-stats report ({read_problem(exc)})") from None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list) or "dataset" not in report:
        raise AttentionStatsError(f"{path}: not an attention-stats report (needs 'dataset' and 'rows')")
    columns = {"model", "level", "mask", "metric", "mean", "ci_low", "ci_high"}
    if any(not isinstance(r, dict) or not columns <= set(r) for r in report["rows"]):
        raise AttentionStatsError(f"{path}: a row lacks one of {sorted(columns)}")
    return report


def stats_table(report: Mapping[str, Any], level: str, mask: str) -> pd.DataFrame:
    """One level and mask kind: a row per model, "mean [low, high]" per metric (for st.dataframe), with the
    seed spread "sd s" when a model has several seeds."""
    frame = pd.DataFrame(report["rows"])
    part = frame[(frame["level"] == level) & (frame["mask"] == mask)]
    out = []
    for model, group in part.groupby("model", sort=False):
        seeds = int(group["seeds"].max()) if "seeds" in group else 1
        row: dict[str, Any] = {"model": display_name(str(model)), "seeds": seeds}
        for r in group.to_dict("records"):
            sd = r.get("seed_sd")
            spread = f" sd {sd:.3f}" if isinstance(sd, float) and not math.isnan(sd) else ""
            row[METRIC_LABELS.get(r["metric"], r["metric"])] = \
                f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]{spread}"
        out.append(row)
    return pd.DataFrame(out)


def pair_table(report: Mapping[str, Any], level: str, mask: str, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Paired model differences at one level and mask kind, with CI and verdict."""
    frame = pd.DataFrame(report.get("pairs") or [], columns=["model_a", "model_b", "level", "mask", "metric",
                                                             "delta", "ci_low", "ci_high", "verdict"])
    part = frame[(frame["level"] == level) & (frame["mask"] == mask) & frame["metric"].isin(metrics)]
    return pd.DataFrame({
        "B - A": [f"{display_name(b)} - {display_name(a)}" for a, b in zip(part["model_a"], part["model_b"],
                                                                            strict=True)],
        "metric": [METRIC_LABELS.get(m, m) for m in part["metric"]],
        "delta": part["delta"].to_numpy(), "CI low": part["ci_low"].to_numpy(), "CI high": part["ci_high"].to_numpy(),
        "verdict": part["verdict"].to_numpy(),
    })


def stats_figure(report: Mapping[str, Any], level: str, mask: str,
                 metrics: Sequence[str] = ("energy_in_boxes", "pointing_game", "entropy", "share_above_half")
                 ) -> go.Figure:
    """Grouped bars (one group per metric, one bar per model) with 95% CI whiskers; the chance level
    (area in boxes) drawn as a dashed line."""
    frame = pd.DataFrame(report["rows"])
    part = frame[(frame["level"] == level) & (frame["mask"] == mask)]
    fig = go.Figure()
    for model, group in part.groupby("model", sort=False):
        g = group.set_index("metric").reindex(list(metrics))
        fig.add_trace(go.Bar(
            x=[METRIC_LABELS.get(m, m) for m in metrics], y=g["mean"], name=display_name(str(model)),
            marker_color=model_color(str(model)),
            error_y={"type": "data", "symmetric": False, "array": g["ci_high"] - g["mean"],
                     "arrayminus": g["mean"] - g["ci_low"]}))
    chance = part[part["metric"] == "area_in_boxes"]["mean"]
    if len(chance):
        fig.add_hline(y=float(chance.mean()), line_dash="dash", line_color="#555",
                      annotation_text=f"chance (face area share) {float(chance.mean()):.3f}")
    fig.update_layout(barmode="group", height=340, yaxis={"range": [0, 1], "title": ""},
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.25},
                      title={"text": f"{level}, {mask} mask (mean over images, 95% CI)", "font": {"size": 13}})
    return fig
