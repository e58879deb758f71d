"""A Markdown conclusion generated only from the data present, naming the dataset of every number.

Why generated: the verdict (which attention design to use) must follow the measurements and their
uncertainty, and say plainly what is missing, instead of a hand-written text going stale. No
sentence ranks two models on a difference whose 95% CI includes 0 (or that has no CI): such a
difference is called "indistinguishable" or "no verdict". AP differences come from eval.verdicts.paired_ap's
paired image bootstrap where its JSONs exist, else from the seed spread (eval.verdicts.hypotheses); latency
differences are paired per round (eval.verdicts.latency_ci).

CLI: `python -m eval.conclusion --results DIR [--runs DIR ...] --out FILE`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # the t quantile (what stats.t.ppf calls), without scipy.stats

from core.config import BASELINE_MODEL, COMPARED_MODELS, MODEL_CONFIGS, MODEL_ORDER, TARGET_MODEL
from core.io.cli_paths import CliParser, error_line, fail, input_dir, output_file, require, warn
from core.lab.artifacts import COMPARISON_CSV, DEFAULT_RESULTS, DEFAULT_RUNS, LATENCY_CSV, TARGETS, atomic_write_text
from core.lab.run_index import index_runs
from eval.verdicts.effects import Effect, ap_difference, load_attention_report, load_compare_ap
from eval.verdicts.hypotheses import hypotheses_markdown, hypothesis_rows
from eval.verdicts.latency_ci import MIN_ROUNDS, paired_difference, precision_note, ratios_to
from eval.verdicts.results_files import (
    METRICS,
    load_comparison,
    load_eval_records,
    load_latency,
    load_latency_runs,
    load_reference,
)
from eval.verdicts.tables import PAIRS, aggregate_seeds, dataset_label, display_name, latest_latency

_AP_WORD = {"agrees": "higher", "opposes": "lower", "includes 0": "indistinguishable (CI includes 0)"}


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
    """Parameter count from the model itself, when no table lists it (eval.verdicts.parameter_cache: counted once per
    version of the model code); None for a name the registry does not know."""
    from eval.verdicts.parameter_cache import parameter_totals

    if model not in MODEL_CONFIGS:
        return None
    try:
        return parameter_totals([model])[model]
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


def ap_verdict(effect: Effect | None) -> str:
    """Plain words for an AP difference b − a: higher / lower / indistinguishable, or why there is no verdict."""
    if effect is None:
        return "not measured"
    if not effect.has_ci:
        return "no verdict: single seed, spread unknown" if (effect.seeds or 0) < 2 else "no verdict: no CI"
    return _AP_WORD[effect.side]


def _effect_text(e: Effect) -> str:
    ci = f"95% CI {_f(e.ci_low, sign=True)} to {_f(e.ci_high, sign=True)}" if e.has_ci else "no CI"
    return f"{_f(e.value, sign=True)} points ({ci}; {e.source})"


def _target_check(values: pd.Series, target: float) -> str:
    """Mean of the seeds against a target: met / missed only when the t interval of the mean excludes it."""
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size < 2:
        return "single seed: no verdict"
    half = float(stdtrit(v.size - 1, 0.975)) * v.std(ddof=1) / np.sqrt(v.size)
    lo, hi = v.mean() - half, v.mean() + half
    return "met" if lo >= target else "missed" if hi < target else "undecided: the CI includes the target"


def _accuracy_section(dataset: str, agg: pd.DataFrame, comparison: pd.DataFrame, reports: Sequence[Mapping],
                      reference: pd.DataFrame) -> list[str]:
    label = dataset_label(dataset)
    sub = agg[agg["dataset"] == dataset]
    out = [f"## Accuracy — {label}", "",
           f"AP (%) on **{label}**, mean ± sample std over the runs (seeds) evaluated:", "",
           "| Model | runs | seeds | Easy | Medium | Hard | mAP |", "|---|---:|---|---:|---:|---:|---:|"]
    for _, r in sub.iterrows():
        cells = " | ".join(_ms(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS)
        out.append(f"| {r['display_name']} | {r['n']} | {r['seeds']} | {cells} |")
    out.append("")
    for a, b, comparison_label in PAIRS:  # PAIRS hold (parallel, other): the difference is a − b
        parts = []
        for m in METRICS:
            e = ap_difference(comparison, reports, b, a, dataset, m)
            if e is not None:
                parts.append(f"{m} {_effect_text(e)}: {ap_verdict(e)}")
        if parts:
            out.append(f"- {comparison_label} on {label}: " + "; ".join(parts) + ".")
    if dataset == "widerface":
        by_model = sub.set_index("model")
        if TARGET_MODEL in by_model.index:
            r = by_model.loc[TARGET_MODEL]
            rows = comparison[(comparison["dataset"] == dataset) & (comparison["model"] == TARGET_MODEL)]
            hits = [f"{m} {_f(r[f'{m}_mean'])} vs {TARGETS[m]} ({_target_check(rows[m], TARGETS[m])})"
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


def _session_runs(latest: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The timed runs of the session the latest rows summarise (empty for older files)."""
    if latest.empty or runs.empty or "session" not in latest or not latest["session"].notna().any():
        return runs.iloc[0:0]
    return runs[runs["session"] == str(latest["session"].dropna().iloc[0])]


def _ci(low: Any, high: Any) -> str:
    return f"{_f(low, sign=True)} to {_f(high, sign=True)}" if _f(low) != "–" else "–"


def _with_ci(value: Any, low: Any, high: Any, sign: bool = False) -> str:
    if _f(low) == "–":
        return _f(value, sign=sign)
    return f"{_f(value, sign=sign)} ({_f(low, sign=sign)} to {_f(high, sign=sign)})"


def _latency_section(lat: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    latest = latest_latency(lat)
    if latest.empty:
        return []
    first = latest.iloc[0]
    session = _session_runs(latest, runs)
    threads = (f", {int(first['threads'])} threads" if _f(first.get("threads")) != "–"
               and "thread" not in str(first["device_name"]) else "")
    out = ["## Latency", "",
           f"Forward pass on random input (independent of the dataset), {first['device_name']}{threads}, input "
           f"{int(first['input_h'])}×{int(first['input_w'])}, batch {int(first['batch'])}, latest session of "
           "`latency_benchmark.csv` (models timed interleaved; overheads are paired per-round differences):", "",
           "| Model | median ms (95% CI) | overhead vs none, ms (95% CI) | verdict |", "|---|---:|---:|---|"]
    for _, r in latest.iterrows():
        med = _with_ci(r["median_ms"], r.get("median_ci_low_ms"), r.get("median_ci_high_ms"))
        over = _with_ci(r["overhead_vs_none_ms"], r.get("overhead_ci_low_ms"), r.get("overhead_ci_high_ms"), sign=True)
        verdict = r.get("overhead_verdict") or "no CI: no verdict"
        out.append(f"| {display_name(r['model'])} | {med} | {over} | {verdict if r['model'] != 'none' else '–'} |")
    out += ["", f"- {precision_note(latest)}"]
    ratios = ratios_to(session, BASELINE_MODEL) if not session.empty else {}
    if ratios:
        backend = first.get("backend") if isinstance(first.get("backend"), str) and first.get("backend") else "torch"
        out.append(f"- Latency as a multiple of {display_name(BASELINE_MODEL)} in the same session and runtime "
                   f"({backend}; median of per-round ratios): "
                   + "; ".join(f"{display_name(m)} {r.text()}" for m, r in ratios.items()) + ".")
    compared = [m for m in COMPARED_MODELS if m in set(session["model"])]
    if len(compared) > 1:
        names = {m: display_name(m) for m in MODEL_ORDER}
        for i, a in enumerate(compared):
            for b in compared[i + 1:]:
                out.append(f"- {paired_difference(session, a, b).sentence(names)}.")
    elif len(latest[latest["model"].isin(COMPARED_MODELS)]) > 1:
        out.append(f"- No per-run timings for this session (`latency_runs.csv`): the models are not ranked "
                   f"against each other. Re-measure with `python -m eval.latency` (at least {MIN_ROUNDS} rounds).")
    out.append("")
    return out


def _latency_pair(session: pd.DataFrame, a: str, b: str) -> str:
    if session.empty or not {a, b} <= set(session["model"]):
        return "latency difference not measured with CIs"
    d = paired_difference(session, a, b)
    return f"{_f(d.median_ms, sign=True)} ms latency ({_ci(d.ci_low_ms, d.ci_high_ms)}: {d.verdict})"


def _tradeoffs(agg: pd.DataFrame, comparison: pd.DataFrame, reports: Sequence[Mapping], session: pd.DataFrame,
               reference: pd.DataFrame) -> list[str]:
    out = ["## Trade-offs", ""]
    for dataset in _dataset_order(agg):
        for a, b, label in PAIRS:
            e = ap_difference(comparison, reports, b, a, dataset)
            if e is None:
                continue
            pa, pb = _params(agg, reference, a), _params(agg, reference, b)
            if pa is None or pb is None:
                params = "parameters unknown"
            else:
                params = f"{pa - pb:+,} parameters" if pa != pb else "the same parameters"
            out.append(f"- {label} ({dataset_label(dataset)}): mAP {_effect_text(e)}, {ap_verdict(e)}; "
                       f"{params}; {_latency_pair(session, a, b)}.")
    out.append("")
    return out if len(out) > 3 else []


def _recommendation(agg: pd.DataFrame, comparison: pd.DataFrame, reports: Sequence[Mapping], session: pd.DataFrame,
                    reference: pd.DataFrame) -> list[str]:
    """Recommend only what the CIs support: a model whose mAP is higher than every other's (CI excludes 0);
    else among the models no other beats, fewer parameters (exact counts), then a latency verdict."""
    out = ["## Recommendation", ""]
    if agg.empty:
        return out + ["- No measured accuracy yet: nothing to recommend. Train the three models and run "
                      "`python -m eval.results` to fill `comparison_table.csv`.", ""]
    dataset = "widerface" if (agg["dataset"] == "widerface").any() else str(agg["dataset"].iloc[0])
    sub = agg[(agg["dataset"] == dataset) & agg["mAP_mean"].notna()]
    models = [m for m in MODEL_ORDER if m in set(sub["model"])] + sorted(set(sub["model"]) - set(MODEL_ORDER))
    label = dataset_label(dataset)
    if not models:
        return out + [f"- No mAP on {label}.", ""]
    if len(models) == 1:
        out.append(f"- Only {display_name(models[0])} was evaluated on {label}: there is nothing to compare it with "
                   "yet.")
        return out + [""]
    effects = {(a, b): ap_difference(comparison, reports, a, b, dataset) for a in models for b in models if a != b}
    if any(e is None or not e.has_ci for e in effects.values()):
        out.append(f"- No recommendation on {label}: the mAP differences have no confidence interval (a single "
                   "seed per model), so none of them can rank the models. Train at least 3 seeds per model, or "
                   "compare prediction sets with `python -m eval.compare_ap`.")
    else:
        beaten = {m for (a, b), e in effects.items() if e.side == "agrees" for m in [a]}  # b − a > 0: a is beaten
        unbeaten = [m for m in models if m not in beaten]
        if len(unbeaten) == 1:
            out.append(f"- On {label}, **{display_name(unbeaten[0])}** has a higher mAP than every other model, "
                       "with 95% CIs that exclude 0: use it.")
        else:
            params = {m: _params(agg, reference, m) for m in unbeaten}
            known = {m: p for m, p in params.items() if p is not None}
            fewest = [m for m, p in known.items() if p == min(known.values())] if known else []
            out.append(f"- On {label}, the mAP of {names(unbeaten)} is indistinguishable (no 95% CI of their "
                       "differences excludes 0).")
            if len(fewest) == 1:
                out.append(f"- Among them, **{display_name(fewest[0])}** has the fewest parameters "
                           f"({known[fewest[0]]:,}, an exact count): prefer it unless more seeds separate them.")
            elif len(fewest) == 2 and not session.empty and set(fewest) <= set(session["model"]):
                d = paired_difference(session, fewest[0], fewest[1])
                if d.verdict == "indistinguishable":
                    out.append(f"- {names(fewest)} have the same parameters and indistinguishable latency "
                               f"({_ci(d.ci_low_ms, d.ci_high_ms)} ms): nothing here separates them.")
                else:
                    fast = fewest[0] if d.verdict == "faster" else fewest[1]
                    out.append(f"- {names(fewest)} have the same parameters; **{display_name(fast)}** is faster "
                               f"({d.sentence({m: display_name(m) for m in MODEL_ORDER})}).")
            elif fewest:
                out.append(f"- {names(fewest)} have the same parameters and no latency verdict separates them.")
    if dataset != "widerface" and len(out) > 2 and not out[-1].startswith("- No recommendation"):
        out.append(f"- Provisional: based on **{label}** only; confirm on WIDERFace val before drawing conclusions.")
    if (sub["n"] < 3).any():
        out.append("- Train at least 3 seeds per model so that the seed spread enters every CI.")
    out.append("")
    return out


def runs_overview(roots: Iterable[Path | str]) -> pd.DataFrame:
    """One row per training run (model, dataset, seed) from run.json alone, each run once (core.lab.run_index):
    no event file is read."""
    rows = [{"run": info.name, "model": info.model, "dataset": info.dataset, "seed": info.seed}
            for _, info in index_runs(roots).runs]
    return pd.DataFrame(rows, columns=["run", "model", "dataset", "seed"])


@dataclass
class ConclusionInputs:
    """Everything the conclusion reads from a results folder, and what was skipped there and why."""

    comp: Any
    ref: Any
    lat: Any
    lat_runs: Any
    records: list
    record_warnings: list[str]
    reports: list
    report_warnings: list[str]
    attention: dict[str, Any] | None
    attention_problem: str | None

    @property
    def measured(self) -> bool:
        """Whether the folder holds any measurement (the reference rows alone are not one)."""
        return bool(not self.comp.frame.empty or not self.lat.frame.empty or self.records or self.reports
                    or self.attention)

    @property
    def skipped(self) -> list[str]:
        """Every file present but not used, with its path and the reason (for stderr)."""
        return [*self.comp.errors, *self.lat.errors, *self.lat_runs.errors, *self.record_warnings,
                *self.report_warnings, *([self.attention_problem] if self.attention_problem else [])]


def conclusion_inputs(results_root: Path | str) -> ConclusionInputs:
    results_root = Path(results_root)
    records, record_warnings = load_eval_records(results_root)
    reports, report_warnings = load_compare_ap(results_root)
    attention, attention_problem = load_attention_report(results_root)
    return ConclusionInputs(load_comparison(results_root), load_reference(results_root), load_latency(results_root),
                            load_latency_runs(results_root), records, record_warnings, reports, report_warnings,
                            attention, attention_problem)


def build_conclusion(results_root: Path | str, runs: pd.DataFrame | None = None,
                     now: datetime | None = None, scalars: pd.DataFrame | None = None,
                     inputs: ConclusionInputs | None = None) -> str:
    """The whole Markdown report. `runs` is the Convergence run table and `scalars` their TensorBoard scalars
    (eval.runs.convergence; None: runs not inspected); `inputs`: `conclusion_inputs(results_root)` if already read."""
    results_root = Path(results_root)
    got = inputs or conclusion_inputs(results_root)
    comp, ref, lat, lat_runs = got.comp, got.ref, got.lat, got.lat_runs
    records, record_warnings, reports, report_warnings = got.records, got.record_warnings, got.reports, \
        got.report_warnings
    attention, attention_problem = got.attention, got.attention_problem
    agg = aggregate_seeds(comp.frame)
    session = _session_runs(latest_latency(lat.frame), lat_runs.frame)
    stamp = (now or datetime.now()).isoformat(timespec="seconds")
    md = ["# FeatherFace Lab — conclusion", "",
          f"Generated {stamp} from `{results_root}`. Every accuracy number names its dataset; synthetic numbers "
          "are never mixed with WIDERFace ones. No sentence ranks two models on a difference whose 95% CI "
          "includes 0 or is unknown.", "", "## Data used", ""]
    if comp.errors:
        md.append(f"- Accuracy: **unusable** `comparison_table.csv`: {comp.errors[0]}")
    elif comp.missing or comp.frame.empty:
        md.append("- Accuracy: no rows in `comparison_table.csv`.")
    else:
        counts = comp.frame.groupby("dataset").size()
        md.append("- Accuracy: `comparison_table.csv`, " + ", ".join(
            f"{n} evaluation(s) on {dataset_label(ds)}" for ds, n in counts.items()) + ".")
    md.append(f"- AP comparisons with a paired image bootstrap (`compare_ap/*.json`): {len(reports)}"
              + (f" ({len(report_warnings)} unreadable)" if report_warnings else "") + ".")
    md.append("- Reference: published rows (paper, WIDERFace val) and targets from "
              + ("the built-in list." if ref.errors or ref.notes else "`reference_results.csv`."))
    if lat.errors:
        md.append(f"- Latency: **unusable** `latency_benchmark.csv`: {lat.errors[0]}")
    elif lat.frame.empty:
        md.append("- Latency: no saved measurements.")
    else:
        md.append(f"- Latency: `latency_benchmark.csv`, {len(lat.frame)} row(s); `latency_runs.csv`, "
                  f"{len(lat_runs.frame)} timed run(s).")
    md.append(f"- Evaluation files (PR curves, per-attribute AP): {len(records)}"
              + (f" ({len(record_warnings)} unreadable)" if record_warnings else "") + ".")
    md.append("- Attention statistics (`attention_stats.json`): " + (
        f"{attention['dataset']}, {attention.get('num_images', '?')} images." if attention else
        f"unusable ({attention_problem})." if attention_problem else "none."))
    if runs is not None:
        md.append(f"- Training runs: {len(runs)}" + (
            " (" + ", ".join(f"{n} on {dataset_label(ds)}" for ds, n in runs.groupby("dataset").size().items()) + ")"
            if len(runs) else "") + ".")
    md.append("")

    if agg.empty:
        md += ["No measured accuracy: nothing below compares the models' detection quality.", ""]
    for dataset in _dataset_order(agg):
        md += _accuracy_section(dataset, agg, comp.frame, reports, ref.frame)
    md += _latency_section(lat.frame, lat_runs.frame)
    md += ["## Parameters", "", "| Model | parameters |", "|---|---:|"]
    for model in MODEL_ORDER:
        p = _params(agg, ref.frame, model)
        md.append(f"| {display_name(model)} | {p:,} |" if p is not None else f"| {display_name(model)} | – |")
    md.append("")
    md += hypotheses_markdown(hypothesis_rows(comp.frame, records, reports, lat_runs.frame, lat.frame, scalars,
                                              attention, attention_problem))
    md += _tradeoffs(agg, comp.frame, reports, session, ref.frame)
    md += _recommendation(agg, comp.frame, reports, session, ref.frame)
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


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.conclusion",
                       description="Write the Markdown conclusion (with the hypotheses table).")
    parser.add_argument("--results", type=input_dir, default=DEFAULT_RESULTS,
                        help=f"results folder (comparison_table.csv, compare_ap/, ...; default {DEFAULT_RESULTS})")
    parser.add_argument("--runs", nargs="*", type=input_dir, default=None,
                        help=f"training run folders (TensorBoard logs) for the convergence hypothesis (default "
                             f"{DEFAULT_RUNS} when it exists; give --runs alone for none)")
    parser.add_argument("--out", type=output_file, default=None,
                        help="Markdown file to write, atomically (default <results>/conclusion.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_checked(argv)
    if args.runs is None:
        args.runs = [DEFAULT_RUNS] if DEFAULT_RUNS.is_dir() else []
    if args.out is None:
        args.out = args.results / "conclusion.md"
        require(parser, "--out", args.out, "output_file")
    inputs = conclusion_inputs(args.results)
    for skipped in inputs.skipped:
        warn(f"{skipped} (skipped)")
    if not inputs.measured:  # a wrong folder must not replace a good conclusion with an empty one
        kept = f"; {args.out} left as it was" if args.out.exists() else ""
        return fail(f"{args.results} holds no measurement ({COMPARISON_CSV}, {LATENCY_CSV}, eval/*.json, "
                    f"compare_ap/*.json or attention_stats.json): no conclusion written{kept}. Is it the folder "
                    "eval.results wrote?")
    runs = scalars = None
    if args.runs:
        from eval.runs.convergence import load_convergence

        data = load_convergence(args.runs)
        for warning in data.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        runs, scalars = runs_overview(args.runs), data.scalars
    try:
        atomic_write_text(args.out, build_conclusion(args.results, runs, scalars=scalars, inputs=inputs))
    except OSError as exc:
        return fail(f"{args.out}: {exc.strerror or error_line(exc)}")
    print(f"wrote {args.out}")
    return 0
