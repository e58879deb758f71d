"""Training curves from the loaded runs: smoothing, seed bands, when a curve first crosses a threshold, how stable
its tail is, and the figures the Convergence page draws."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.config import display_name, model_color
from eval.runs.convergence import DATASET_DASH, STEP_PREFIX, Band, ConvergenceData, Direction, is_real


def ema_smooth(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's scalar smoothing: debiased EMA, NaN/inf passed through, constant series untouched."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    f = y[finite]
    if weight == 0 or f.size == 0 or np.all(f == f[0]):
        return y.copy()
    out = y.copy()
    out[finite] = _ema(f, weight) / (1 - weight ** np.arange(1, f.size + 1))
    return out


def _ema(v: np.ndarray, w: float) -> np.ndarray:
    """last_k = w * last_(k-1) + (1 - w) * v_k from 0, without a Python loop per point.

    In blocks of B points the recurrence has a closed form, (1-w) w^j cumsum(v_i w^-i); B keeps w^-B far
    from overflow. Blocks are then chained by their last value (one scalar step per block).
    """
    n = v.size
    block = int(max(1, min(n, 1024, np.floor(250 / -np.log10(w)))))
    nb = -(-n // block)
    padded = np.zeros(nb * block)
    padded[:n] = v
    j = np.arange(block)
    local = (1 - w) * np.cumsum(padded.reshape(nb, block) * w ** (-j.astype(np.float64)), axis=1) * w ** j
    carry = np.zeros(nb)
    c, w_block = 0.0, w ** block
    for b in range(nb - 1):
        c = c * w_block + local[b, -1]
        carry[b + 1] = c
    return (local + carry[:, None] * w ** (j + 1)).ravel()[:n]


def _run_groups(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """`frame` ordered by run then step (load_convergence's order is kept), and where each run starts."""
    run = frame["run"]
    codes = run.cat.codes.to_numpy() if isinstance(run.dtype, pd.CategoricalDtype) else pd.factorize(run)[0]
    steps = frame["step"].to_numpy()
    dc, ds = np.diff(codes), np.diff(steps)
    if not np.all((dc > 0) | ((dc == 0) & (ds >= 0))):
        frame = frame.sort_values(["run", "step"], kind="stable")
        run = frame["run"]
        codes = run.cat.codes.to_numpy() if isinstance(run.dtype, pd.CategoricalDtype) else pd.factorize(run)[0]
    return frame, np.r_[0, np.flatnonzero(np.diff(codes)) + 1, len(frame)]


def series(data: ConvergenceData | pd.DataFrame, tag: str, smoothing: float = 0.0) -> pd.DataFrame:
    """One tag for every run, sorted by run then step, with a `smoothed` column (EMA per run)."""
    scalars = data.scalars if isinstance(data, ConvergenceData) else data
    sub = scalars[scalars["tag"] == tag]
    if sub.empty:
        return sub.assign(smoothed=pd.Series(dtype="float64"))
    sub, bounds = _run_groups(sub)
    values = sub["value"].to_numpy(dtype=np.float64)
    smoothed = np.empty(len(values))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        smoothed[a:b] = ema_smooth(values[a:b], smoothing)
    return sub.assign(smoothed=smoothed)


def seed_band(curves: pd.DataFrame, column: str = "smoothed") -> pd.DataFrame:
    """Mean/std/min/max over runs per (model, dataset, step); `n` says how many runs had that step.

    Datasets are never pooled. std is the sample std (0 where a single run has the step).
    """
    if curves.empty:
        return pd.DataFrame(columns=["model", "dataset", "step", "mean", "std", "min", "max", "n"])
    agg = (curves.groupby(["model", "dataset", "step"], observed=True)[column]
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
    for run, g in curves.groupby("run", sort=True, observed=True):
        mean, var = tail_stats(g["smoothed"].to_numpy(), last_n)
        rows.append({
            "run": str(run), "model": str(g["model"].iloc[0]), "dataset": str(g["dataset"].iloc[0]),
            "seed": g["seed"].iloc[0], "epochs": int(g["step"].max()),
            "reached_at": first_crossing(g["step"], g["smoothed"], threshold, direction),
            f"last{last_n}_mean": mean, f"last{last_n}_var": var,
        })
    cols = ["run", "model", "dataset", "seed", "epochs", "reached_at", f"last{last_n}_mean", f"last{last_n}_var"]
    return pd.DataFrame(rows, columns=cols)


def stability_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """Stability summarised per (model, dataset): how many runs reached the threshold, and when on average."""
    if table.empty:
        return pd.DataFrame(columns=["model", "dataset", "runs", "reached", "mean_reached_at"])
    tail = [c for c in table.columns if c.startswith("last")]
    out = (table.groupby(["model", "dataset"], observed=True)
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
    sub = data.scalars[data.scalars["tag"] == tag]
    if sub.empty:
        return 0.0
    sub, bounds = _run_groups(sub)
    values = sub["value"].to_numpy(dtype=np.float64)
    first = float(values[bounds[:-1]].mean())
    best = float(np.nanmax(values) if default_direction(tag) == "above" else np.nanmin(values))
    return round((first + best) / 2, 4)


def _legend(model: str, dataset: str, seed: object = None) -> str:
    base = f"{display_name(model)} · {dataset}"
    return base if seed is None or pd.isna(seed) else f"{base} · seed {seed}"


def minmax_indices(columns: Sequence[np.ndarray], max_points: int) -> np.ndarray:
    """Which points of a line to draw so that at most `max_points` remain and no extreme is lost.

    The line is cut into equal buckets of consecutive points; each keeps the position of its minimum and
    of its maximum (of every column given: a band keeps its low and high edges), plus the first and
    last point. A single spike is therefore always drawn, unlike every-k-th thinning.
    """
    n = len(columns[0])
    if n <= max_points:
        return np.arange(n)
    per_bucket = 2 * len(columns)
    buckets = max(1, (max_points - 2) // per_bucket)
    size = -(-n // buckets)
    buckets = -(-n // size)
    keep = [np.array([0, n - 1])]
    offsets = np.arange(buckets) * size
    for col in columns:
        v = np.asarray(col, dtype=np.float64)
        lo = np.full(buckets * size, np.inf)
        hi = np.full(buckets * size, -np.inf)
        finite = np.isfinite(v)
        lo[:n] = np.where(finite, v, np.inf)
        hi[:n] = np.where(finite, v, -np.inf)
        keep.append(offsets + lo.reshape(buckets, size).argmin(axis=1))
        keep.append(offsets + hi.reshape(buckets, size).argmax(axis=1))
    idx = np.unique(np.concatenate(keep))
    return idx[idx < n]


def curve_figure(data: ConvergenceData, tag: str, smoothing: float = 0.0, log_y: bool = False,
                 aggregate: bool = False, band: Band = "minmax", title: str | None = None,
                 max_points: int = 2000) -> go.Figure:
    """Runs overlaid (colour = model; legend grouped by model and dataset, one "seed N" entry per run), or
    per model and dataset the mean of its runs with a min-max / ±std band. Datasets get different dashes
    when several are drawn; real runs are drawn first. Smoothing and statistics use every point; each line
    is then cut to `max_points` for drawing by `minmax_indices`, so spikes stay visible."""
    curves = series(data, tag, smoothing)
    fig = go.Figure()
    x_title = "step" if tag.startswith(STEP_PREFIX) else "epoch"
    datasets = list(dict.fromkeys(map(str, curves["dataset"]))) if not curves.empty else []
    several = len(datasets) > 1
    origins = dict(zip(data.runs["run"], data.runs["origin"], strict=True)) if "origin" in data.runs else {}

    def dash(dataset: str) -> str:
        return DATASET_DASH.get(dataset, "dash") if several else "solid"

    def mode(n: int) -> str:
        return "lines+markers" if n <= 30 else "lines"

    if aggregate:
        agg = seed_band(curves)
        agg = agg.assign(_synthetic=~agg["dataset"].map(is_real).astype(bool))  # real groups drawn first
        for (_, model, dataset), g in agg.groupby(["_synthetic", "model", "dataset"], sort=True, observed=True):
            model, dataset = str(model), str(dataset)
            steps = g["step"].to_numpy()
            lo, hi = ((g["min"], g["max"]) if band == "minmax" else (g["mean"] - g["std"], g["mean"] + g["std"]))
            # an inf/NaN loss (the source's log has inf epochs) is a gap: plotly would join the band around it
            lo, hi, mean = (np.where(np.isfinite(v), v, np.nan)
                            for v in (lo.to_numpy(dtype=np.float64), hi.to_numpy(dtype=np.float64),
                                      g["mean"].to_numpy(dtype=np.float64)))
            idx = minmax_indices([lo, hi, mean], max_points)
            color = model_color(model)
            name = f"{_legend(model, dataset)} (n={int(g['n'].max())})"
            if int(g["n"].max()) > 1:  # one run has no spread; a zero-width band around gaps draws as a wedge
                fig.add_trace(go.Scatter(x=steps[idx], y=hi[idx], mode="lines", line={"width": 0}, showlegend=False,
                                         hoverinfo="skip", legendgroup=name))
                fig.add_trace(go.Scatter(x=steps[idx], y=lo[idx], mode="lines", line={"width": 0}, fill="tonexty",
                                         fillcolor=_rgba(color, 0.2), showlegend=False, hoverinfo="skip",
                                         legendgroup=name))
            fig.add_trace(go.Scatter(x=steps[idx], y=mean[idx], mode=mode(len(idx)), name=name, legendgroup=name,
                                     line={"color": color, "dash": dash(dataset)}, marker={"size": 5}))
    elif not curves.empty:
        curves, bounds = _run_groups(curves)
        steps_all = curves["step"].to_numpy()
        raw_all = curves["value"].to_numpy(dtype=np.float64)
        smooth_all = curves["smoothed"].to_numpy()
        runs = curves["run"].astype(str).to_numpy()
        models, dsets, seeds = curves["model"].astype(str).to_numpy(), curves["dataset"].astype(str).to_numpy(), \
            curves["seed"].astype(object).to_numpy()
        order = sorted(range(len(bounds) - 1), key=lambda i: not is_real(dsets[bounds[i]]))
        titled: set[str] = set()
        for i in order:
            a, b = bounds[i], bounds[i + 1]
            run, model, dataset, seed = runs[a], models[a], dsets[a], seeds[a]
            steps, raw, smooth = steps_all[a:b], raw_all[a:b], smooth_all[a:b]
            color = model_color(model)
            group = _legend(model, dataset)
            title_text = group if group not in titled else None
            titled.add(group)
            origin = origins.get(run, "")
            hover = (f"{run}<br>{_legend(model, dataset, seed)}" + (f"<br>{origin}" if origin else "")
                     + f"<br>{x_title} %{{x}}: %{{y:.4g}}<extra></extra>")
            entry = f"seed {seed}" if seed is not None and not pd.isna(seed) else run
            if smoothing > 0:
                idx = minmax_indices([raw], max_points)
                fig.add_trace(go.Scatter(x=steps[idx], y=raw[idx], mode="lines", opacity=0.25, showlegend=False,
                                         line={"color": color}, hoverinfo="skip", legendgroup=group))
            idx = minmax_indices([smooth], max_points)
            fig.add_trace(go.Scatter(x=steps[idx], y=smooth[idx], mode=mode(len(idx)), name=entry,
                                     legendgroup=group, legendgrouptitle_text=title_text, hovertemplate=hover,
                                     line={"color": color, "dash": dash(dataset)}, marker={"size": 5}))
    fig.update_layout(title=title or tag, xaxis_title=x_title, yaxis_title=tag, height=460,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"font": {"size": 10}, "orientation": "h", "yanchor": "top", "y": -0.25,
                              "groupclick": "togglegroup", "grouptitlefont": {"size": 10}})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
