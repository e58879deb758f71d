"""The research plan's hypotheses about the parallel design, each judged on a measured effect with its CI.

Why: the seed plan (notebook 03, after Wang et al. 2024) expects the parallel ECA-CBAM to beat the
sequential one by +6.5 mAP and CBAM by +2.0, to be more robust on occluded and small faces, to
converge about 10 epochs sooner, to have denser and more precise heatmaps, and a latency parallel <=
sequential <= CBAM. A sentence about any of these must rest on an effect and its CI:

* `judge` turns effects (value, 95% CI, dataset, seeds, expected direction, claimed size) into a
  verdict `supported` / `contradicted` / `inconclusive` and the reason. Blocking reasons first:
  no CI, a single seed (training variance unknown), synthetic data only (the claims are about
  WIDERFace). Then: every CI on the expected side of 0 -> supported, unless the CI lies entirely
  short of the claimed size (-> contradicted, "smaller than claimed"); every CI excluding 0 on the
  other side -> contradicted; anything else -> inconclusive ("CI includes 0", or mixed).
* The effect builders read what the results folder and the runs hold: paired image-bootstrap JSONs
  of eval.verdicts.paired_ap (`<results>/compare_ap/*.json`) first, else the seed spread of
  comparison_table.csv / the eval JSONs (Welch t interval over seeds, none for a single seed);
  the paired latency runs (latency_runs.csv); the TensorBoard val AP (eval.runs.convergence); the
  attention-stats report (`<results>/attention_stats.json`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.config import CBAM, SEQUENTIAL
from core.lab.artifacts import dataset_label
from eval.verdicts.effects import (
    CONVERGENCE_FRACTION,
    REAL_DATASET,
    Effect,
    ap_effects,
    attention_effects,
    convergence_effects,
    latency_effects,
    subset_effects,
)

VERDICTS: tuple[str, ...] = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Hypothesis:
    key: str
    claim: str
    test: str  # how it is measured


@dataclass(frozen=True)
class HypothesisRow:
    key: str
    claim: str
    effect: str
    dataset: str
    verdict: str
    reason: str
    effects: tuple[Effect, ...] = field(default=(), repr=False)


HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis("a", "Parallel ECA-CBAM gains +6.5 mAP over sequential ECA-CBAM",
               "mAP difference parallel − sequential (AP points)"),
    Hypothesis("b", "Parallel ECA-CBAM gains +2.0 mAP over CBAM",
               "mAP difference parallel − CBAM (AP points)"),
    Hypothesis("c", "Parallel ECA-CBAM is more robust on occluded and on small faces",
               "hard-set AP on heavily occluded and on small faces, parallel − sequential and parallel − CBAM"),
    Hypothesis("d", "Parallel ECA-CBAM converges about 10 epochs sooner",
               f"epochs until the val mAP first reaches {CONVERGENCE_FRACTION:.0%} of the lowest best val mAP "
               "among the runs, sequential − parallel"),
    Hypothesis("e", "Parallel ECA-CBAM has denser and more precise heatmaps",
               "hybrid masks at stage1-3 and P3-P5, parallel − sequential: energy in face boxes above chance "
               "(higher = more precise) and normalised entropy (lower = denser)"),
    Hypothesis("f", "Latency: parallel ≤ sequential ≤ CBAM (parallel and sequential have equal parameters)",
               "paired per-round latency differences parallel − sequential and sequential − CBAM (ms)"),
)


def judge(effects: Sequence[Effect], missing: str = "not measured", real_dataset: str = REAL_DATASET
          ) -> tuple[str, str]:
    """(verdict, reason) for a hypothesis from its effects; see the module docstring for the rules."""
    if not effects:
        return "inconclusive", missing
    if any(e.dataset == real_dataset for e in effects):  # synthetic effects are shown but never vote beside real ones
        effects = [e for e in effects if e.dataset == real_dataset or e.dataset.startswith("random input")]
    blocking = []
    if any(not e.has_ci for e in effects) and all(e.seeds is None or e.seeds >= 2 for e in effects):
        blocking.append("no CI")
    if any(e.seeds is not None and e.seeds < 2 for e in effects):
        blocking.append("single seed")
    datasets = {e.dataset for e in effects if not e.dataset.startswith("random input")}
    if datasets and real_dataset not in datasets:
        blocking.append(f"{' and '.join(sorted(datasets))} data only")
    sides = [e.side for e in effects]
    agree, oppose = sides.count("agrees"), sides.count("opposes")
    if blocking:
        shown = ""
        if agree or oppose:
            shown = f" (there: {agree} of {len(effects)} CIs on the predicted side of 0, {oppose} on the other)"
        elif "includes 0" in sides:
            shown = " (there: CI includes 0)"
        return "inconclusive", "; ".join(blocking) + shown
    if agree == len(effects):
        short = [e for e in effects if e.short_of_claim()]
        if short:
            return "contradicted", "smaller than claimed: " + "; ".join(
                f"{e.label} CI ends at {e.ci_high if e.expected == 'higher' else e.ci_low:+.2f}, claimed "
                f"{e.claimed:+.2f} {e.unit}".rstrip() for e in short)
        return "supported", "every CI excludes 0 on the predicted side"
    if oppose == len(effects):
        return "contradicted", "every CI excludes 0 on the other side"
    parts = []
    if agree and oppose:
        parts.append(f"mixed: {agree} of {len(effects)} CIs on the predicted side of 0, {oppose} on the other")
    elif oppose:
        parts.append("against the prediction: " + ", ".join(e.label for e in effects if e.side == "opposes"))
    zero = [e.label for e in effects if e.side == "includes 0"]
    if zero:
        parts.append("CI includes 0" + (f" ({', '.join(zero)})" if len(effects) > 1 else ""))
    return "inconclusive", "; ".join(parts)


def build_row(hypothesis: Hypothesis, effects: Sequence[Effect], missing: str = "not measured") -> HypothesisRow:
    verdict, reason = judge(effects, missing)
    datasets = sorted({e.dataset for e in effects})
    dataset = ", ".join(dataset_label(d) if not d.startswith("random input") else d for d in datasets) or "–"
    effect = "; ".join(e.text() for e in effects) or "–"
    return HypothesisRow(hypothesis.key, hypothesis.claim, effect, dataset, verdict, reason, tuple(effects))


def hypothesis_rows(comparison: pd.DataFrame, records: Sequence[Any], reports: Sequence[Mapping[str, Any]],
                    latency_runs: pd.DataFrame, latency_summary: pd.DataFrame, scalars: pd.DataFrame | None,
                    attention: Mapping[str, Any] | None, attention_problem: str | None = None) -> list[HypothesisRow]:
    """One row per hypothesis (a)-(f) from the loaded data."""
    by_key = {h.key: h for h in HYPOTHESES}
    if scalars is None:
        conv, conv_note = [], "training runs not inspected"
    else:
        conv, conv_note = convergence_effects(scalars)
    rows = [
        build_row(by_key["a"], ap_effects(comparison, reports, SEQUENTIAL, claimed=6.5),
                  "no mAP of both designs (comparison_table.csv)"),
        build_row(by_key["b"], ap_effects(comparison, reports, CBAM, claimed=2.0),
                  "no mAP of both designs (comparison_table.csv)"),
        build_row(by_key["c"], subset_effects(records, reports), "no per-attribute AP (eval JSONs)"),
        build_row(by_key["d"], conv, conv_note),
        build_row(by_key["e"], attention_effects(attention),
                  f"no attention stats ({attention_problem})" if attention_problem else
                  "no attention stats (run `python -m eval.attention_stats` into the results folder)"),
        build_row(by_key["f"], latency_effects(latency_runs, latency_summary),
                  "no paired latency runs of the three designs (latency_runs.csv)"),
    ]
    if conv and scalars is not None:
        rows[3] = HypothesisRow(**{**rows[3].__dict__, "reason": f"{rows[3].reason} ({conv_note})"})
    return rows


def hypotheses_markdown(rows: Iterable[HypothesisRow]) -> list[str]:
    """The Hypotheses section of the conclusion."""
    out = ["## Hypotheses", "",
           "The research plan's expectations for the parallel design, each judged on a measured effect and its "
           "95% CI: *supported* / *contradicted* only when the CI excludes 0 (and, for a claimed size, when the CI "
           "reaches it), with at least 2 seeds per model and WIDERFace data; otherwise *inconclusive*, with the "
           "reason.", "",
           "| | Hypothesis | Measured effect (95% CI) | Dataset | Verdict | Reason |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| ({r.key}) | {r.claim} | {r.effect} | {r.dataset} | **{r.verdict}** | {r.reason} |")
    tests = "; ".join(f"({h.key}) {h.test}" for h in HYPOTHESES)
    out += ["", f"How each is measured: {tests}.", ""]
    return out
