"""Training curves of the runs under the runs roots: loading, smoothing, seed bands, stability.

The event files themselves are read (incrementally, damage reported) by `eval.event_files`.
Pure Python/pandas/plotly: the Convergence page only wires widgets to these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.artifacts import RUN_JSON, TB_TAGS, RunInfo
from core.config import display_name, model_color
from eval.event_files import EVENT_GLOB, SCALAR_COLUMNS, EventCache, default_cache, empty_scalars
from eval.roots import confined_files
from eval.run_index import index_runs

RUN_COLUMNS: tuple[str, ...] = ("run", "model", "display_name", "dataset", "seed", "root", "event_files",
                                "last_epoch", "points", "status")
DATASET_DASH: dict[str, str] = {"widerface": "solid", "synthetic": "dot"}

# What the page offers, in display order: label -> TensorBoard tag (epoch-level except the step ones).
CURVES: dict[str, str] = {
    "Train loss (total)": TB_TAGS["train_loss"],
    "Val loss (total)": TB_TAGS["val_loss"],
    "Train loss: box": TB_TAGS["train_loss_box"],
    "Train loss: class": TB_TAGS["train_loss_cls"],
    "Train loss: landmark": TB_TAGS["train_loss_landmark"],
    "Val loss: box": TB_TAGS["val_loss_box"],
    "Val loss: class": TB_TAGS["val_loss_cls"],
    "Val loss: landmark": TB_TAGS["val_loss_landmark"],
    "Learning rate": TB_TAGS["lr"],
    "Val AP easy (%)": TB_TAGS["ap_easy"],
    "Val AP medium (%)": TB_TAGS["ap_medium"],
    "Val AP hard (%)": TB_TAGS["ap_hard"],
    "Train loss per step": TB_TAGS["step_loss"],
    "Learning rate per step": TB_TAGS["step_lr"],
    "Train loss per step: box": TB_TAGS["step_loss_box"],
    "Train loss per step: class": TB_TAGS["step_loss_cls"],
    "Train loss per step: landmark": TB_TAGS["step_loss_landmark"],
    "Epoch time (s)": TB_TAGS["epoch_time"],
    "Training images per second": TB_TAGS["images_per_s"],
}
Direction = Literal["below", "above"]
Band = Literal["minmax", "std"]


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class ConvergenceData:
    """All runs found under the roots: one row per run, long-format scalars, and every warning."""

    runs: pd.DataFrame  # RUN_COLUMNS
    scalars: pd.DataFrame  # run, model, dataset, seed, tag, step, value, wall_time
    warnings: tuple[str, ...]

    @property
    def tags(self) -> list[str]:
        return sorted(self.scalars["tag"].unique()) if not self.scalars.empty else []


def _run_ids(found: list[tuple[Path, RunInfo]]) -> list[str]:
    """Short unique names: path relative to its root, with the root's name added only on a clash."""
    rel = [str(info.path.relative_to(root)) if info.path != root else info.name for root, info in found]
    clashes = {r for r in rel if rel.count(r) > 1}
    return [f"{root.name}/{r}" if r in clashes else r for (root, _), r in zip(found, rel, strict=True)]


def load_convergence(roots: Iterable[Path | str], cache: EventCache | None = None) -> ConvergenceData:
    """Read every run (folder with run.json) under `roots` once (eval.run_index); missing roots are simply
    empty. Event files resolving outside the run's root are skipped with a warning."""
    cache = cache or default_cache()
    index = index_runs(roots)
    found = index.runs
    warnings: list[str] = index.notes
    rows, frames = [], []
    for (root, info), run_id in zip(found, _run_ids(found), strict=True):
        files, skipped = confined_files(info.path, EVENT_GLOB, root, recursive=True)
        warnings += skipped
        reads = sorted((cache.read(p) for p in files), key=lambda r: (r.first_wall_time, r.path.name))
        problems = [r.warning for r in reads if r.warning]
        warnings += problems
        parts: list[pd.DataFrame] = []
        for r in reads:  # a resumed writer voids what earlier files logged at or after its purge step
            if r.purge_step is not None:
                parts = [p[p["step"] < r.purge_step] for p in parts]
            if not r.scalars.empty:
                parts.append(r.scalars)
        parts = [p for p in parts if not p.empty]
        scalars = pd.concat(parts, ignore_index=True) if parts else empty_scalars()
        # A resumed run rewrites some steps: keep the latest value of each (tag, step).
        scalars = (scalars.sort_values("wall_time", kind="stable")
                   .drop_duplicates(["tag", "step"], keep="last").sort_values(["tag", "step"]))
        epoch_tags = [t for t in scalars["tag"].unique() if not str(t).startswith("train_step/")]
        epoch_rows = scalars[scalars["tag"].isin(epoch_tags)]
        status = "no event file" if not files else ("; ".join(problems) if problems else "ok")
        if files and not problems and scalars.empty:
            status = "no scalars yet"
        rows.append({
            "run": run_id, "model": info.model, "display_name": display_name(info.model), "dataset": info.dataset,
            "seed": info.seed, "root": str(root), "event_files": len(files),
            "last_epoch": int(epoch_rows["step"].max()) if not epoch_rows.empty else None,
            "points": len(scalars), "status": status,
        })
        frames.append(scalars.assign(run=run_id, model=info.model, dataset=info.dataset, seed=info.seed))
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    cols = ["run", "model", "dataset", "seed", *SCALAR_COLUMNS]
    scalars = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    return ConvergenceData(runs=runs, scalars=scalars, warnings=tuple(warnings))


def fingerprint(roots: Iterable[Path | str]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every run.json and event file: a cheap key that changes when any run grows."""
    stamp = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for path in sorted([*root.rglob(RUN_JSON), *root.rglob(EVENT_GLOB)]):
            try:
                st = path.stat()
            except OSError:
                continue
            stamp.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def select_runs(data: ConvergenceData, models: Iterable[str] | None = None,
                datasets: Iterable[str] | None = None) -> ConvergenceData:
    """The runs of the chosen models and datasets (None keeps all)."""
    keep = data.runs
    if models is not None:
        keep = keep[keep["model"].isin(list(models))]
    if datasets is not None:
        keep = keep[keep["dataset"].isin(list(datasets))]
    scalars = data.scalars[data.scalars["run"].isin(keep["run"])]
    return ConvergenceData(runs=keep.reset_index(drop=True), scalars=scalars, warnings=data.warnings)


def available_metrics(data: ConvergenceData) -> dict[str, str]:
    """CURVES entries that at least one run has logged, then any other logged tag under its own name."""
    tags = set(data.tags)
    known = {label: tag for label, tag in CURVES.items() if tag in tags}
    extra = {tag: tag for tag in sorted(tags - set(CURVES.values()))}
    return known | extra


# --------------------------------------------------------------------------- curves


def ema_smooth(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's scalar smoothing: debiased EMA, NaN/inf passed through, constant series untouched."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    y = np.asarray(values, dtype=np.float64)
    finite = y[np.isfinite(y)]
    if weight == 0 or finite.size == 0 or np.all(finite == finite[0]):
        return y.copy()
    out = np.empty_like(y)
    last, count = 0.0, 0
    for i, v in enumerate(y):
        if not np.isfinite(v):
            out[i] = v
            continue
        last = last * weight + (1 - weight) * v
        count += 1
        out[i] = last / (1 - weight ** count)
    return out


def series(data: ConvergenceData | pd.DataFrame, tag: str, smoothing: float = 0.0) -> pd.DataFrame:
    """One tag for every run, sorted by step, with a `smoothed` column (EMA per run)."""
    scalars = data.scalars if isinstance(data, ConvergenceData) else data
    sub = scalars[scalars["tag"] == tag].sort_values(["run", "step"])
    if sub.empty:
        return sub.assign(smoothed=pd.Series(dtype="float64"))
    smoothed = [pd.Series(ema_smooth(g["value"].to_numpy(), smoothing), index=g.index)
                for _, g in sub.groupby("run", sort=False)]
    return sub.assign(smoothed=pd.concat(smoothed))


def seed_band(curves: pd.DataFrame, column: str = "smoothed") -> pd.DataFrame:
    """Mean/std/min/max over runs per (model, dataset, step); `n` says how many runs had that step.

    Datasets are never pooled. std is the sample std (0 where a single run has the step).
    """
    if curves.empty:
        return pd.DataFrame(columns=["model", "dataset", "step", "mean", "std", "min", "max", "n"])
    agg = (curves.groupby(["model", "dataset", "step"])[column]
           .agg(mean="mean", std="std", min="min", max="max", n="count").reset_index())
    agg["std"] = agg["std"].fillna(0.0)
    return agg


def first_crossing(steps: Sequence[int], values: Sequence[float], threshold: float,
                   direction: Direction = "below") -> int | None:
    """First step where the value reaches the threshold (<= for losses, >= for AP), or None."""
    v = np.asarray(values, dtype=np.float64)
    hit = v <= threshold if direction == "below" else v >= threshold
    idx = np.flatnonzero(hit)
    return int(np.asarray(steps)[idx[0]]) if idx.size else None


def tail_stats(values: Sequence[float], last_n: int) -> tuple[float, float]:
    """Mean and (population) variance of the last N values: small variance = settled training."""
    v = np.asarray(values, dtype=np.float64)[-max(1, last_n):]
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.var())


def default_direction(tag: str) -> Direction:
    return "above" if "/ap_" in tag else "below"


def stability_table(data: ConvergenceData, tag: str, threshold: float, last_n: int = 5,
                    smoothing: float = 0.0, direction: Direction | None = None) -> pd.DataFrame:
    """Per run: epochs run, first epoch reaching `threshold`, mean/variance of the last N epochs."""
    direction = direction or default_direction(tag)
    curves = series(data, tag, smoothing)
    rows = []
    for run, g in curves.groupby("run", sort=True):
        mean, var = tail_stats(g["smoothed"].to_numpy(), last_n)
        rows.append({
            "run": run, "model": g["model"].iloc[0], "dataset": g["dataset"].iloc[0], "seed": g["seed"].iloc[0],
            "epochs": int(g["step"].max()), "reached_at": first_crossing(g["step"], g["smoothed"], threshold,
                                                                        direction),
            f"last{last_n}_mean": mean, f"last{last_n}_var": var,
        })
    cols = ["run", "model", "dataset", "seed", "epochs", "reached_at", f"last{last_n}_mean", f"last{last_n}_var"]
    return pd.DataFrame(rows, columns=cols)


def stability_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """Stability summarised per (model, dataset): how many runs reached the threshold, and when on average."""
    if table.empty:
        return pd.DataFrame(columns=["model", "dataset", "runs", "reached", "mean_reached_at"])
    tail = [c for c in table.columns if c.startswith("last")]
    out = (table.groupby(["model", "dataset"])
           .agg(runs=("run", "count"), reached=("reached_at", "count"),
                mean_reached_at=("reached_at", "mean"), **{c: (c, "mean") for c in tail})
           .reset_index())
    return out


def stability_figure(table: pd.DataFrame) -> go.Figure:
    """Per run: epoch reaching the threshold (left) and variance of the last N epochs (right)."""
    from plotly.subplots import make_subplots

    var_col = next((c for c in table.columns if c.endswith("_var")), None)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["first epoch reaching the threshold",
                                                        (var_col or "variance").replace("_", " ")])
    colors = [model_color(m) for m in table["model"]]
    labels = [f"{r} ({d})" for r, d in zip(table["run"], table["dataset"], strict=True)]
    fig.add_trace(go.Bar(x=labels, y=table["reached_at"], marker_color=colors, showlegend=False,
                         hovertemplate="%{x}<br>epoch %{y}<extra></extra>"), row=1, col=1)
    if var_col:
        fig.add_trace(go.Bar(x=labels, y=table[var_col], marker_color=colors, showlegend=False,
                             hovertemplate="%{x}<br>variance %{y:.4g}<extra></extra>"), row=1, col=2)
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def threshold_default(data: ConvergenceData, tag: str) -> float:
    """A sensible starting threshold: midway between the first and best values over all runs."""
    sub = data.scalars[data.scalars["tag"] == tag].sort_values("step")
    if sub.empty:
        return 0.0
    first = float(sub.groupby("run")["value"].first().mean())
    best = float(sub["value"].max() if default_direction(tag) == "above" else sub["value"].min())
    return round((first + best) / 2, 4)


def _legend(model: str, dataset: str, seed: object = None) -> str:
    base = f"{display_name(model)} · {dataset}"
    return base if seed is None or pd.isna(seed) else f"{base} · seed {seed}"


def curve_figure(data: ConvergenceData, tag: str, smoothing: float = 0.0, log_y: bool = False,
                 aggregate: bool = False, band: Band = "minmax", title: str | None = None,
                 max_points: int = 2000) -> go.Figure:
    """Runs overlaid (colour = model; legend grouped by model and dataset), or per-model mean with a
    min-max / ±std band. Datasets get different dashes when several are drawn. Lines longer than
    `max_points` (per-step tags) are thinned for drawing only; short ones get markers."""
    curves = series(data, tag, smoothing)
    fig = go.Figure()
    x_title = "step" if tag.startswith("train_step/") else "epoch"
    several = curves["dataset"].nunique() > 1 if not curves.empty else False

    def dash(dataset: str) -> str:
        return DATASET_DASH.get(dataset, "dash") if several else "solid"

    def mode(n: int) -> str:
        return "lines+markers" if n <= 30 else "lines"

    if aggregate:
        for (model, dataset), g in seed_band(curves).groupby(["model", "dataset"], sort=True):
            g = _thin(g, max_points)
            color = model_color(model)
            lo, hi = (g["min"], g["max"]) if band == "minmax" else (g["mean"] - g["std"], g["mean"] + g["std"])
            name = f"{_legend(model, dataset)} (n={int(g['n'].max())})"
            fig.add_trace(go.Scatter(x=g["step"], y=hi, mode="lines", line={"width": 0}, showlegend=False,
                                     hoverinfo="skip", legendgroup=name))
            fig.add_trace(go.Scatter(x=g["step"], y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor=_rgba(color, 0.2), showlegend=False, hoverinfo="skip",
                                     legendgroup=name))
            fig.add_trace(go.Scatter(x=g["step"], y=g["mean"], mode=mode(len(g)), name=name, legendgroup=name,
                                     line={"color": color, "dash": dash(dataset)}, marker={"size": 5}))
    else:
        titled: set[str] = set()
        for run, g in curves.groupby("run", sort=True):
            g = _thin(g, max_points)
            model, dataset, seed = g["model"].iloc[0], g["dataset"].iloc[0], g["seed"].iloc[0]
            color = model_color(model)
            group = _legend(model, dataset)
            title_text = group if group not in titled else None
            titled.add(group)
            hover = f"{run}<br>{_legend(model, dataset, seed)}<br>{x_title} %{{x}}: %{{y:.4g}}<extra></extra>"
            if smoothing > 0:
                fig.add_trace(go.Scatter(x=g["step"], y=g["value"], mode="lines", opacity=0.25, showlegend=False,
                                         line={"color": color}, hoverinfo="skip", legendgroup=group))
            fig.add_trace(go.Scatter(x=g["step"], y=g["smoothed"], mode=mode(len(g)), name=str(run),
                                     legendgroup=group, legendgrouptitle_text=title_text, hovertemplate=hover,
                                     line={"color": color, "dash": dash(dataset)}, marker={"size": 5}))
    fig.update_layout(title=title or tag, xaxis_title=x_title, yaxis_title=tag, height=460,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"font": {"size": 10}, "orientation": "h", "yanchor": "top", "y": -0.25,
                              "groupclick": "toggleitem", "grouptitlefont": {"size": 10}})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """Every k-th row (plus the last) so a browser never draws more than ~max_points per line; smoothing
    and statistics are computed on the full series before this."""
    if len(frame) <= max_points:
        return frame
    k = -(-len(frame) // max_points)
    keep = np.zeros(len(frame), dtype=bool)
    keep[::k] = True
    keep[-1] = True
    return frame[keep]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
