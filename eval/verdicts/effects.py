"""The measured effects a hypothesis is judged on, each with its CI and where it comes from: AP differences (paired
bootstrap or seed spread), hard-set subsets, latency overheads, convergence speed, attention on faces."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config import CBAM, PARALLEL, SEQUENTIAL, display_name
from core.io.cli_paths import read_problem
from core.lab.roots import SourceError, confine
from eval.verdicts.ci import UNDECIDED, ci_verdict
from eval.verdicts.seeds import welch_ci

Direction = Literal["higher", "lower"]


REAL_DATASET = "widerface"


LEVEL = 0.95


ATTENTION_STATS_JSON = "attention_stats.json"


ROBUSTNESS_SUBSETS: dict[str, str] = {"occlusion=2": "heavily occluded faces", "scale=small": "small faces (<50 px)"}
"""Hard-set subsets for hypothesis (c), as eval.widerface.protocol / eval.verdicts.paired_ap name them."""


CONVERGENCE_FRACTION = 0.9
"""Hypothesis (d): epochs until the val mAP first reaches 90% of the lowest best val mAP among the compared
runs (a level every run reaches), per run; effect = mean over sequential seeds - mean over parallel seeds."""


@dataclass(frozen=True)
class Effect:
    """A measured difference (parallel minus the other design unless `label` says otherwise), with its CI."""

    label: str  # what is compared, e.g. "mAP, parallel − sequential"
    value: float
    ci_low: float
    ci_high: float
    unit: str  # "AP points", "ms", "epochs", ""
    dataset: str  # "widerface", "synthetic", or "random input (...)" for latency
    expected: Direction  # the side of 0 the hypothesis predicts
    seeds: int | None = None  # trained runs per model behind the value (min over both sides); None: not applicable
    source: str = ""
    claimed: float | None = None  # the size the plan predicts, in `unit`, on the expected side

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    @property
    def side(self) -> str:
        """"agrees", "opposes" (CI excludes 0 on the expected / other side), "includes 0" or "no CI"."""
        if not self.has_ci:
            return "no CI"
        side = ci_verdict(self.ci_low, self.ci_high, "higher", "lower")
        if side == UNDECIDED:
            return "includes 0"
        return "agrees" if side == self.expected else "opposes"

    def short_of_claim(self) -> bool:
        """The whole CI lies on the expected side but short of the claimed size."""
        if self.claimed is None or not self.has_ci:
            return False
        return self.ci_high < self.claimed if self.expected == "higher" else self.ci_low > -abs(self.claimed)

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        ci = f"95% CI {self.ci_low:+.2f} to {self.ci_high:+.2f}" if self.has_ci else "no CI"
        return f"{self.label}: {self.value:+.2f}{unit} ({ci})"


def load_compare_ap(results_root: Path | str) -> tuple[list[dict[str, Any]], list[str]]:
    """eval.compare_ap reports under `<results>/compare_ap/` with `model_a`/`model_b` (paired_ap.load_reports)."""
    from eval.verdicts.paired_ap import load_reports

    return load_reports(results_root)


def _ap_from_bootstrap(reports: Sequence[Mapping[str, Any]], a: str, b: str, key: str, label: str,
                       expected: Direction, claimed: float | None, dataset: str | None = None) -> Effect | None:
    """b − a from a compare_ap report (either orientation), in AP points; None when no report has it."""
    for r in reports:
        pair = (r["model_a"], r["model_b"])
        if pair not in ((a, b), (b, a)) or (dataset is not None and r.get("dataset") != dataset):
            continue
        entry = r.get("settings", {}).get(key) or r.get("breakdown", {}).get(key)
        if not entry:
            continue
        sign = 1.0 if pair == (a, b) else -1.0
        lo, hi = sorted((sign * 100 * float(entry["ci_low"]), sign * 100 * float(entry["ci_high"])))
        seeds = min(int(r.get("seeds_a", 1)), int(r.get("seeds_b", 1)))
        mode = str(r.get("seed_mode", ""))
        source = "paired image bootstrap (eval.compare_ap" + (f", seeds {mode})" if mode else ")")
        return Effect(label, sign * 100 * float(entry["delta"]), lo, hi, "AP points", str(r.get("dataset", "?")),
                      expected, seeds, source, claimed)
    return None


def ap_difference(comparison: pd.DataFrame, reports: Sequence[Mapping[str, Any]], a: str, b: str, dataset: str,
                  metric: str = "mAP", claimed: float | None = None) -> Effect | None:
    """b − a on `metric` (AP points) on one dataset: the image bootstrap where a report exists, else the seeds
    of comparison_table.csv (Welch t; no CI for a single seed); None when a model has no value there."""
    label = f"{metric}, {display_name(b)} − {display_name(a)}"
    boot = _ap_from_bootstrap(reports, a, b, metric, label, "higher", claimed, dataset)
    if boot is not None:
        return boot
    g = comparison[comparison["dataset"] == dataset]
    va, vb = g.loc[g["model"] == a, metric].dropna(), g.loc[g["model"] == b, metric].dropna()
    if va.empty or vb.empty:
        return None
    value, lo, hi = welch_ci(va, vb)
    n = min(len(va), len(vb))
    source = "seed spread (Welch t over seeds)" if n >= 2 else "one run per model"
    return Effect(label, value, lo, hi, "AP points", dataset, "higher", n, source, claimed)


def ap_effects(comparison: pd.DataFrame, reports: Sequence[Mapping[str, Any]], other: str, metric: str = "mAP",
               claimed: float | None = None) -> list[Effect]:
    """parallel − `other` on `metric`, one effect per dataset holding both (bootstrap reports first)."""
    datasets = list(dict.fromkeys([*comparison["dataset"].astype(str), *(str(r.get("dataset")) for r in reports)]))
    found = (ap_difference(comparison, reports, other, PARALLEL, d, metric, claimed) for d in datasets)
    return [e for e in found if e is not None]


def subset_effects(records: Sequence[Any], reports: Sequence[Mapping[str, Any]],
                   subsets: Mapping[str, str] = ROBUSTNESS_SUBSETS) -> list[Effect]:
    """Hypothesis (c): hard-set AP on each subset, parallel − sequential and parallel − CBAM.

    Bootstrap reports (run with --breakdown) first, else the eval JSONs' per-attribute AP over seeds.
    """
    out = []
    for other in (SEQUENTIAL, CBAM):
        for key, what in subsets.items():
            label = f"{what}, {display_name(PARALLEL)} − {display_name(other)}"
            boot = _ap_from_bootstrap(reports, other, PARALLEL, key, label, "higher", None)
            if boot is not None:
                out.append(boot)
                continue
            attr, value = key.split("=")
            values: dict[tuple[str, str], list[float]] = {}
            for rec in records:
                entry = rec.breakdown.get(attr, {}).get(value)
                if entry is not None and rec.model in (other, PARALLEL):
                    values.setdefault((rec.dataset, rec.model), []).append(100.0 * float(entry["ap"]))
            for dataset in dict.fromkeys(d for d, _ in values):
                a, b = values.get((dataset, other), []), values.get((dataset, PARALLEL), [])
                if a and b:
                    diff, lo, hi = welch_ci(a, b)
                    out.append(Effect(label, diff, lo, hi, "AP points", dataset, "higher", min(len(a), len(b)),
                                      "seed spread of the eval JSONs (Welch t over seeds)"))
    return out


def latency_effects(runs: pd.DataFrame, summary: pd.DataFrame) -> list[Effect]:
    """Hypothesis (f) from the last latency session holding the three designs: paired per-round differences."""
    from eval.verdicts.latency_ci import paired_difference

    if runs.empty:
        return []
    needed = {PARALLEL, SEQUENTIAL, CBAM}
    sessions = [s for s, g in runs.groupby("session", sort=False) if needed <= set(g["model"])]
    if not sessions:
        return []
    session = sessions[-1]
    part = runs[runs["session"] == session]
    meta = summary[summary["session"].astype(str) == session] if "session" in summary else summary.iloc[0:0]
    where = "random input"
    if not meta.empty:
        m = meta.iloc[0]
        threads = "" if "thread" in str(m["device_name"]) else f", {int(m['threads'])} threads"
        where = (f"random input ({m['device_name']}{threads}, {int(m['input_h'])}x{int(m['input_w'])}, "
                 f"batch {int(m['batch'])})")
    out = []
    for a, b in ((PARALLEL, SEQUENTIAL), (SEQUENTIAL, CBAM)):
        d = paired_difference(part, a, b)
        out.append(Effect(f"{display_name(a)} − {display_name(b)}", d.median_ms, d.ci_low_ms, d.ci_high_ms, "ms",
                          where, "lower", None, f"median of {d.rounds} paired rounds, bootstrap CI"))
    return out


def convergence_effects(scalars: pd.DataFrame, fraction: float = CONVERGENCE_FRACTION) -> tuple[list[Effect], str]:
    """Hypothesis (d) per dataset from TensorBoard val AP (eval.runs.convergence scalars); (effects, note)."""
    tags = ("val/ap_easy", "val/ap_medium", "val/ap_hard")
    if scalars.empty or not scalars["tag"].isin(tags).any():
        return [], "no val AP logged in the training runs"
    ap = scalars[scalars["tag"].isin(tags)]
    ap = ap.astype({c: str for c in ("run", "model", "dataset", "tag") if c in ap.columns})  # categoricals -> str
    mean = ap.pivot_table(index=["run", "model", "dataset", "step"], columns="tag", values="value").reindex(
        columns=list(tags)).mean(axis=1, skipna=False).dropna().rename("map").reset_index()
    out, notes = [], []
    for dataset, g in mean.groupby("dataset", sort=False):
        g = g[g["model"].isin((PARALLEL, SEQUENTIAL))]
        if set(g["model"]) != {PARALLEL, SEQUENTIAL}:
            continue
        best = g.groupby("run")["map"].max()
        threshold = fraction * float(best.min())
        reached: dict[str, list[int]] = {PARALLEL: [], SEQUENTIAL: []}
        for (_run, model), r in g.sort_values("step").groupby(["run", "model"]):
            hit = r.loc[r["map"] >= threshold, "step"]
            reached[model].append(int(hit.iloc[0]))
        steps = np.diff(np.sort(g["step"].unique()))
        resolution = int(steps.min()) if steps.size else 1
        value, lo, hi = welch_ci(reached[PARALLEL], reached[SEQUENTIAL])
        out.append(Effect(f"epochs to val mAP ≥ {threshold:.1f}, {display_name(SEQUENTIAL)} − {display_name(PARALLEL)}",
                          value, lo, hi, "epochs", str(dataset), "higher",
                          min(len(reached[PARALLEL]), len(reached[SEQUENTIAL])),
                          "Welch t over seeds", 10.0))
        notes.append(f"{dataset}: val AP every {resolution} epoch(s), threshold "
                     f"{fraction:.0%} of the lowest best val mAP ({threshold:.1f})")
    return out, "; ".join(notes) if notes else "no dataset with both designs' val AP"


def attention_effects(report: Mapping[str, Any] | None, mask: str = "hybrid") -> list[Effect]:
    """Hypothesis (e) from an eval.attention.measure report: per level, parallel − sequential.

    The report's CIs cover the image sample with each model's seeds averaged per image ("seeds" counts
    them); a report without that count is one checkpoint per model: a single seed.
    """
    if not report:
        return []
    out = []
    pairs = [p for p in report.get("pairs") or [] if p.get("mask") == mask
             and {p.get("model_a"), p.get("model_b")} == {PARALLEL, SEQUENTIAL}]
    counts = report.get("seeds") if isinstance(report.get("seeds"), dict) else {}
    seeds = min(int(counts.get(PARALLEL, 1)), int(counts.get(SEQUENTIAL, 1)))
    for metric, expected, what in (("energy_gain", "higher", "energy above chance"),
                                   ("entropy", "lower", "normalised entropy")):
        for p in pairs:
            if p.get("metric") != metric:
                continue
            sign = 1.0 if p["model_b"] == PARALLEL else -1.0
            lo, hi = sorted((sign * float(p["ci_low"]), sign * float(p["ci_high"])))
            out.append(Effect(f"{what} at {p['level']}", sign * float(p["delta"]), lo, hi, "", str(report["dataset"]),
                              expected, seeds, "paired image bootstrap (eval.attention_stats, seeds averaged)"))
    return out


def load_attention_report(results_root: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    """(report, problem) for `<results>/attention_stats.json`; a missing file is (None, None).

    Read here with json rather than dashboard.logic.attention_report.load_report, which pulls in torch and cv2.
    """
    path = Path(results_root) / ATTENTION_STATS_JSON
    if not (path.is_file() or path.is_symlink()):
        return None, None
    try:
        confine(path, results_root)
    except SourceError as exc:
        return None, str(exc)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path}: unreadable ({read_problem(exc)})"
    need = {"model_a", "model_b", "level", "mask", "metric", "delta", "ci_low", "ci_high"}
    if (not isinstance(report, dict) or "dataset" not in report or not isinstance(report.get("pairs"), list)
            or any(not isinstance(p, dict) or not need <= set(p) for p in report["pairs"])):
        return None, f"{path}: not an attention-stats report (needs 'dataset' and 'pairs' with {sorted(need)})"
    return report, None
