"""A Markdown conclusion generated only from the data present, naming the dataset of every number.

Why generated: the verdict (which attention design to use) must follow the measurements, including
their seed spread, and say plainly what is missing, instead of a hand-written text going stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.artifacts import TARGETS, find_runs
from core.config import COMPARED_MODELS, MODEL_ORDER, TARGET_MODEL
from eval.compare import (
    METRICS,
    PAIRS,
    aggregate_seeds,
    dataset_label,
    deltas,
    display_name,
    latest_latency,
    load_comparison,
    load_eval_records,
    load_latency,
    load_reference,
)

_VERDICT = {True: "exceeds the seed spread", False: "is within the seed spread",
            None: "cannot be judged against the seed spread (single run on at least one side)"}
_SHORT = {True: "exceeds the seed spread", False: "within the seed spread", None: "spread unknown: single run"}


def _dataset_order(agg: pd.DataFrame) -> list[str]:
    """WIDERFace first (the benchmark that matters), then synthetic, then anything else."""
    present = set(agg["dataset"])
    return [ds for ds in ("widerface", "synthetic") if ds in present] + sorted(present - {"widerface", "synthetic"})


def _f(value: Any, digits: int = 2, sign: bool = False) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if np.isnan(v):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _ms(mean: Any, std: Any) -> str:
    return f"{_f(mean)} ± {_f(std)}" if _f(std) != "–" else _f(mean)


@lru_cache(maxsize=8)
def _built_params(model: str) -> int | None:
    """Parameter count from the model itself, when no table lists it (builds the CPU model once)."""
    from core.factory import build_model

    try:
        return int(sum(p.numel() for p in build_model(model).parameters()))
    except (KeyError, ValueError):
        return None


def _params(agg: pd.DataFrame, reference: pd.DataFrame, model: str) -> int | None:
    for frame in (agg, reference):
        hit = frame[(frame["model"] == model) & frame["params"].notna()] if "params" in frame else frame.iloc[0:0]
        if not hit.empty:
            return int(hit["params"].iloc[0])
    return _built_params(model)


def names(models: list[str]) -> str:
    return ", ".join(display_name(m) for m in models)


def _pair(sub: pd.DataFrame, a: str, b: str, metric: str = "mAP") -> tuple[float, bool | None]:
    """Mean difference a - b on one dataset and whether it exceeds std_a + std_b."""
    ra, rb = sub.loc[a], sub.loc[b]
    delta = float(ra[f"{metric}_mean"] - rb[f"{metric}_mean"])
    spread = ra[f"{metric}_std"] + rb[f"{metric}_std"]
    return delta, (bool(abs(delta) > spread) if not np.isnan(spread) else None)


def _accuracy_section(dataset: str, agg: pd.DataFrame, d: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    label = dataset_label(dataset)
    sub = agg[agg["dataset"] == dataset]
    out = [f"## Accuracy — {label}", "",
           f"AP (%) on **{label}**, mean ± sample std over the runs (seeds) evaluated:", "",
           "| Model | runs | seeds | Easy | Medium | Hard | mAP |", "|---|---:|---|---:|---:|---:|---:|"]
    for _, r in sub.iterrows():
        cells = " | ".join(_ms(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS)
        out.append(f"| {r['display_name']} | {r['n']} | {r['seeds']} | {cells} |")
    out.append("")
    best = []
    for m in METRICS:
        if sub[f"{m}_mean"].notna().any():
            top = sub.loc[sub[f"{m}_mean"].idxmax()]
            best.append(f"{m} {top['display_name']} ({_f(top[f'{m}_mean'])})")
    if best:
        out.append(f"- Best on {label}: " + "; ".join(best) + ".")
    for comparison, g in d[d["dataset"] == dataset].groupby("comparison", sort=False):
        parts = [f"{r['metric']} {_f(r['delta'], sign=True)}" for _, r in g.iterrows()]
        verdicts = {m: r["exceeds_spread"] for m, r in g.set_index("metric").iterrows()}
        mAP = verdicts.get("mAP")
        out.append(f"- {comparison} on {label}: " + ", ".join(parts) + f" points; the mAP difference {_VERDICT[mAP]}.")
    if dataset == "widerface":
        by_model = sub.set_index("model")
        if TARGET_MODEL in by_model.index:
            r = by_model.loc[TARGET_MODEL]
            hits = [f"{m} {_f(r[f'{m}_mean'])} vs {TARGETS[m]} ({'met' if r[f'{m}_mean'] >= TARGETS[m] else 'missed'})"
                    for m in METRICS]
            out.append(f"- {display_name(TARGET_MODEL)} against the targets (WIDERFace val): " + "; ".join(hits) + ".")
        published = reference[reference["kind"] == "published"].set_index("model")
        for model in by_model.index.intersection(published.index):
            p = published.loc[model]
            p = p.iloc[0] if isinstance(p, pd.DataFrame) else p
            diff = by_model.loc[model, "mAP_mean"] - float(p["mAP"])
            out.append(f"- {display_name(model)}: measured mAP {_f(by_model.loc[model, 'mAP_mean'])} vs published "
                       f"{_f(p['mAP'])} ({_f(diff, sign=True)}, WIDERFace val).")
    else:
        out.append(f"- These numbers come from the **{label}** data: they compare the variants with each other "
                   "only, and are not comparable with the published WIDERFace results or the targets.")
    out.append("")
    return out


def _latency_section(lat: pd.DataFrame) -> list[str]:
    latest = latest_latency(lat)
    if latest.empty:
        return []
    first = latest.iloc[0]
    out = ["## Latency", "",
           f"Forward pass on random input (independent of the dataset), {first['device_name']}, input "
           f"{int(first['input_h'])}×{int(first['input_w'])}, batch {int(first['batch'])}, latest saved rows of "
           "`latency_benchmark.csv`:", "",
           "| Model | median ms | FPS | overhead vs none (ms) |", "|---|---:|---:|---:|"]
    for _, r in latest.iterrows():
        out.append(f"| {display_name(r['model'])} | {_f(r['median_ms'])} | {_f(r['fps'], 1)} | "
                   f"{_f(r['overhead_vs_none_ms'], sign=True)} |")
    compared = latest[latest["model"].isin(COMPARED_MODELS)]
    if len(compared) > 1:
        fast = compared.loc[compared["median_ms"].idxmin()]
        out += ["", f"- Fastest compared model: {display_name(fast['model'])} ({_f(fast['median_ms'])} ms median)."]
    out.append("")
    return out


def _tradeoffs(agg: pd.DataFrame, lat: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    latest = latest_latency(lat).set_index("model") if not lat.empty else pd.DataFrame()
    out = ["## Trade-offs", ""]
    for dataset in _dataset_order(agg):
        sub = agg[agg["dataset"] == dataset].set_index("model")
        for a, b, label in PAIRS:
            if a not in sub.index or b not in sub.index:
                continue
            delta, exceeds = _pair(sub, a, b)
            pa, pb = _params(agg, reference, a), _params(agg, reference, b)
            if pa is None or pb is None:
                params = "parameters unknown"
            else:
                params = f"{pa - pb:+,} parameters" if pa != pb else "the same parameters"
            if a in latest.index and b in latest.index:
                lat_txt = f"{_f(latest.loc[a, 'median_ms'] - latest.loc[b, 'median_ms'], sign=True)} ms latency"
            else:
                lat_txt = "latency not measured"
            out.append(f"- {label} ({dataset_label(dataset)}): mAP {_f(delta, sign=True)} points "
                       f"({_SHORT[exceeds]}) for {params} and {lat_txt}.")
    out.append("")
    return out if len(out) > 3 else []


def _recommendation(agg: pd.DataFrame, lat: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    out = ["## Recommendation", ""]
    if agg.empty:
        return out + ["- No measured accuracy yet: nothing to recommend. Train the three models and run "
                      "`python -m eval.results` to fill `comparison_table.csv`.", ""]
    dataset = "widerface" if (agg["dataset"] == "widerface").any() else str(agg["dataset"].iloc[0])
    sub = agg[agg["dataset"] == dataset].set_index("model")
    sub = sub[sub["mAP_mean"].notna()].sort_values("mAP_mean", ascending=False)
    label = dataset_label(dataset)
    if sub.empty:
        return out + [f"- No mAP on {label}.", ""]
    top = sub.index[0]
    within = [m for m in sub.index[1:] if _pair(sub, top, m)[1] is False]
    unknown = [m for m in sub.index[1:] if _pair(sub, top, m)[1] is None]
    latest = latest_latency(lat).set_index("model") if not lat.empty else pd.DataFrame()

    def cost(model: str) -> tuple[float, float]:
        params = _params(agg, reference, model)
        ms = float(latest.loc[model, "median_ms"]) if model in latest.index else np.inf
        return (params if params is not None else np.inf, ms)

    best = f"{display_name(top)} has the best mAP ({_f(sub.loc[top, 'mAP_mean'])})"
    if len(sub) == 1:
        out.append(f"- Only {display_name(top)} was evaluated on {label}: there is nothing to compare it with yet.")
    elif not within and not unknown:
        out.append(f"- On {label}, **{best}** and its lead over every other model exceeds the seed spread: use it.")
    elif within:
        cheapest = min([top, *within], key=cost)
        out.append(f"- On {label}, {best}, but its lead over {names(within)} is within the seed spread. Among "
                   f"these, the cheapest (fewest parameters, then lowest latency) is **{display_name(cheapest)}**: "
                   "prefer it unless more seeds separate them.")
    if unknown and not within:
        out.append(f"- On {label}, {best}: **{display_name(top)}** is the provisional choice; its lead over "
                   f"{names(unknown)} cannot be judged against the seed spread (single runs).")
    elif unknown:
        out.append(f"- Its lead over {names(unknown)} cannot be judged against the seed spread (single runs).")
    if dataset != "widerface":
        out.append(f"- Provisional: based on **{label}** only; confirm on WIDERFace val before drawing conclusions.")
    if (sub["n"] < 3).any():
        out.append("- Train at least 3 seeds per model so that differences can be judged against the seed spread.")
    out.append("")
    return out


def runs_overview(roots: Iterable[Path | str]) -> pd.DataFrame:
    """One row per training run (model, dataset, seed) from run.json alone: no event file is read."""
    rows = [{"run": info.name, "model": info.model, "dataset": info.dataset, "seed": info.seed}
            for root in roots for info in find_runs(root)[0]]
    return pd.DataFrame(rows, columns=["run", "model", "dataset", "seed"])


def build_conclusion(results_root: Path | str, runs: pd.DataFrame | None = None,
                     now: datetime | None = None) -> str:
    """The whole Markdown report. `runs` is the Convergence run table (None: runs not inspected)."""
    results_root = Path(results_root)
    comp, ref, lat = load_comparison(results_root), load_reference(results_root), load_latency(results_root)
    records, record_warnings = load_eval_records(results_root)
    agg = aggregate_seeds(comp.frame)
    d = deltas(agg)
    stamp = (now or datetime.now()).isoformat(timespec="seconds")
    md = ["# FeatherFace Lab — conclusion", "",
          f"Generated {stamp} from `{results_root}`. Every accuracy number names its dataset; synthetic numbers "
          "are never mixed with WIDERFace ones.", "", "## Data used", ""]
    if comp.errors:
        md.append(f"- Accuracy: **unusable** `comparison_table.csv`: {comp.errors[0]}")
    elif comp.missing or comp.frame.empty:
        md.append("- Accuracy: no rows in `comparison_table.csv`.")
    else:
        counts = comp.frame.groupby("dataset").size()
        md.append("- Accuracy: `comparison_table.csv`, " + ", ".join(
            f"{n} evaluation(s) on {dataset_label(ds)}" for ds, n in counts.items()) + ".")
    md.append("- Reference: published rows (paper, WIDERFace val) and targets from "
              + ("the built-in list." if ref.errors or ref.notes else "`reference_results.csv`."))
    if lat.errors:
        md.append(f"- Latency: **unusable** `latency_benchmark.csv`: {lat.errors[0]}")
    elif lat.frame.empty:
        md.append("- Latency: no saved measurements.")
    else:
        md.append(f"- Latency: `latency_benchmark.csv`, {len(lat.frame)} row(s).")
    md.append(f"- Evaluation files (PR curves, per-attribute AP): {len(records)}"
              + (f" ({len(record_warnings)} unreadable)" if record_warnings else "") + ".")
    if runs is not None:
        md.append(f"- Training runs: {len(runs)}" + (
            " (" + ", ".join(f"{n} on {dataset_label(ds)}" for ds, n in runs.groupby("dataset").size().items()) + ")"
            if len(runs) else "") + ".")
    md.append("")

    if agg.empty:
        md += ["No measured accuracy: nothing below compares the models' detection quality.", ""]
    for dataset in _dataset_order(agg):
        md += _accuracy_section(dataset, agg, d, ref.frame)
    md += _latency_section(lat.frame)
    md += ["## Parameters", "", "| Model | parameters |", "|---|---:|"]
    for model in MODEL_ORDER:
        p = _params(agg, ref.frame, model)
        md.append(f"| {display_name(model)} | {p:,} |" if p is not None else f"| {display_name(model)} | – |")
    md.append("")
    md += _tradeoffs(agg, lat.frame, ref.frame)
    md += _recommendation(agg, lat.frame, ref.frame)
    md += ["## Missing data", ""] + [f"- {m}" for m in _missing(comp, lat, agg, records, runs)] + [""]
    return "\n".join(md)


def _missing(comp: Any, lat: Any, agg: pd.DataFrame, records: list, runs: pd.DataFrame | None) -> list[str]:
    out = []
    if comp.errors:
        out.append(f"`comparison_table.csv` could not be read ({comp.errors[0]}).")
    elif agg.empty:
        out.append("No accuracy measurements (`comparison_table.csv` is missing or empty): "
                   "run `python -m eval.results`.")
    if not agg.empty and not (agg["dataset"] == "widerface").any():
        out.append("No WIDERFace val evaluation: the targets and published numbers cannot be checked.")
    for dataset, g in agg.groupby("dataset"):
        absent = [display_name(m) for m in COMPARED_MODELS if m not in set(g["model"])]
        if absent:
            out.append(f"{dataset_label(dataset)}: no evaluation of {', '.join(absent)}.")
        single = [display_name(m) for m, n in zip(g["model"], g["n"], strict=True) if n < 2]
        if single:
            out.append(f"{dataset_label(dataset)}: a single run of {', '.join(single)}: no seed spread.")
    if lat.errors:
        out.append(f"`latency_benchmark.csv` could not be read ({lat.errors[0]}).")
    elif lat.frame.empty:
        out.append("No latency measurements: use the Latency page or `python -m eval.latency`.")
    if not records:
        out.append("No evaluation JSON files: no PR curves or per-attribute AP.")
    if runs is not None and runs.empty:
        out.append("No training runs found: no convergence curves.")
    return out or ["Nothing: every kind of result is present."]
