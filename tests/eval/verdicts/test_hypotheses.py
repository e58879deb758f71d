"""Hypothesis verdicts on crafted effects and data: the rules, each effect builder, the conclusion wiring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.config import PARALLEL
from core.lab.artifacts import COMPARISON_COLUMNS
from eval.verdicts.conclusion import build_conclusion, main
from eval.verdicts.effects import (
    Effect,
    ap_effects,
    attention_effects,
    convergence_effects,
    latency_effects,
    load_compare_ap,
    subset_effects,
)
from eval.verdicts.hypotheses import CBAM, HYPOTHESES, SEQUENTIAL, hypotheses_markdown, hypothesis_rows, judge
from eval.verdicts.results_files import load_eval_records
from eval.verdicts.seeds import difference_verdict, welch_ci, welch_from_summary
from tests.conftest import exit_status
from tests.eval.verdicts.test_latency_ci import crafted_runs
from tests.eval.verdicts.test_tables import PARAMS, eval_payload, make_results_root

NAN = float("nan")


def effect(lo: float, hi: float, *, value: float | None = None, dataset: str = "widerface", seeds: int | None = 3,
           expected: str = "higher", claimed: float | None = None, label: str = "x") -> Effect:
    v = (lo + hi) / 2 if value is None else value
    return Effect(label, v, lo, hi, "AP points", dataset, expected, seeds, "test", claimed)


@pytest.mark.parametrize(("effects", "verdict", "reason"), [
    ([effect(0.5, 2.0)], "supported", "every CI excludes 0 on the predicted side"),
    ([effect(-2.0, -0.5)], "contradicted", "every CI excludes 0 on the other side"),
    ([effect(-0.5, 2.0)], "inconclusive", "CI includes 0"),
    ([effect(0.5, 2.0, expected="lower")], "contradicted", "other side"),
    ([effect(-2.0, -0.5, expected="lower")], "supported", "predicted side"),
    ([effect(1.0, 3.0, claimed=6.5)], "contradicted", "smaller than claimed"),
    ([effect(5.0, 8.0, claimed=6.5)], "supported", "predicted side"),
    ([effect(0.5, 2.0), effect(-2.0, -0.5)], "inconclusive", "mixed: 1 of 2"),
    ([effect(0.5, 2.0, label="p"), effect(-1.0, 1.0, label="q")], "inconclusive", "CI includes 0 (q)"),
    ([effect(0.5, 2.0, seeds=1)], "inconclusive", "single seed"),
    ([effect(NAN, NAN, value=3.0, seeds=1)], "inconclusive", "single seed"),
    ([effect(NAN, NAN, value=3.0, seeds=3)], "inconclusive", "no CI"),
    ([effect(0.5, 2.0, dataset="synthetic")], "inconclusive", "synthetic data only (there: 1 of 1 CIs"),
    ([effect(-0.5, 2.0, dataset="synthetic", seeds=1)], "inconclusive", "single seed; synthetic data only"),
    ([effect(0.5, 2.0, dataset="random input (cpu)", seeds=None)], "supported", "predicted side"),
    ([effect(0.5, 2.0), effect(-2.0, -0.5, dataset="synthetic", seeds=1)], "supported", "predicted side"),
    ([], "inconclusive", "nothing here"),
])
def test_judge_rules(effects, verdict, reason):
    got, why = judge(effects, missing="nothing here")
    assert got == verdict and reason in why


def test_welch_interval_matches_scipy():
    a, b = [70.1, 71.0, 69.5], [73.2, 74.8, 72.9, 74.0]
    value, lo, hi = welch_ci(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert value == pytest.approx(np.mean(b) - np.mean(a))
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert math.isnan(welch_ci([1.0], [2.0, 3.0])[1]) and welch_ci([1.0], [2.0, 3.0])[0] == 1.5
    assert welch_ci([1.0, 1.0], [2.0, 2.0]) == (1.0, 1.0, 1.0)
    summary = welch_from_summary(np.mean(a), np.std(a, ddof=1), 3, np.mean(b), np.std(b, ddof=1), 4)
    assert summary == pytest.approx((value, lo, hi))
    assert difference_verdict(lo, hi) == "higher" and difference_verdict(-1, 1) == "indistinguishable"
    assert difference_verdict(NAN, NAN) == "single seed" and difference_verdict(-2, -1) == "lower"


def comparison(seeds: dict[str, list[float]], dataset: str = "widerface") -> pd.DataFrame:
    rows = [{"model": m, "dataset": dataset, "mAP": v, "easy": v, "medium": v, "hard": v, "seed": i,
             "params": PARAMS[m]} for m, vals in seeds.items() for i, v in enumerate(vals)]
    return pd.DataFrame(rows).reindex(columns=list(COMPARISON_COLUMNS))


def test_ap_effects_from_seeds_and_from_a_bootstrap_report():
    comp = comparison({SEQUENTIAL: [80.0, 80.1, 79.9], PARALLEL: [81.0, 81.1, 80.9], CBAM: [80.0]})
    (seq,) = ap_effects(comp, [], SEQUENTIAL, claimed=6.5)
    assert seq.value == pytest.approx(1.0) and seq.seeds == 3 and seq.ci_low > 0 and "Welch" in seq.source
    assert judge([seq])[0] == "contradicted" and "smaller than claimed" in judge([seq])[1]
    (cb,) = ap_effects(comp, [], CBAM)
    assert cb.seeds == 1 and not cb.has_ci and judge([cb]) == ("inconclusive", "single seed")
    # A compare_ap report in the other orientation (A = parallel, B = sequential), fractions: sign and scale flip.
    report = {"model_a": PARALLEL, "model_b": SEQUENTIAL, "dataset": "widerface", "seeds_a": 3, "seeds_b": 3,
              "seed_mode": "two-level",
              "settings": {"mAP": {"delta": -0.02, "ci_low": -0.03, "ci_high": -0.01}}}
    (boot,) = ap_effects(comp, [report], SEQUENTIAL)
    assert boot.value == pytest.approx(2.0) and (boot.ci_low, boot.ci_high) == pytest.approx((1.0, 3.0))
    assert "compare_ap" in boot.source and boot.seeds == 3


def test_compare_ap_files_are_found_by_fields_or_name(tmp_path: Path):
    folder = tmp_path / "compare_ap"
    folder.mkdir()
    (folder / f"{SEQUENTIAL}__{PARALLEL}.json").write_text(json.dumps({"dataset": "widerface", "settings": {}}))
    (folder / "x.json").write_text(json.dumps({"model_a": CBAM, "model_b": PARALLEL, "settings": {},
                                               "dataset": "synthetic"}))
    (folder / "bad.json").write_text("{")
    (folder / "anon.json").write_text(json.dumps({"settings": {}, "dataset": "widerface"}))
    reports, warnings = load_compare_ap(tmp_path)
    assert sorted((r["model_a"], r["model_b"]) for r in reports) == [(CBAM, PARALLEL), (SEQUENTIAL, PARALLEL)]
    assert len(warnings) == 2 and all("unreadable AP comparison" in w for w in warnings)


def test_subset_effects_from_eval_records(tmp_path: Path):
    root = make_results_root(tmp_path / "results")
    records, _ = load_eval_records(root)
    effects = subset_effects(records, [])
    labels = {(e.label.split(",")[0], e.dataset) for e in effects}
    assert ("heavily occluded faces", "widerface") in labels and ("small faces (<50 px)", "synthetic") in labels
    occ = next(e for e in effects if e.label.startswith("heavily occluded") and CBAM not in e.label
               and "CBAM baseline" not in e.label and e.dataset == "synthetic")
    # eval_payload: occlusion=2 AP 0.2 for every model -> a zero difference, one file per model: single seed.
    assert occ.value == pytest.approx(0.0) and occ.seeds == 1 and not occ.has_ci
    # A compare_ap report with the hard-set breakdown takes precedence over the eval JSONs.
    report = {"model_a": SEQUENTIAL, "model_b": PARALLEL, "dataset": "widerface", "seeds_a": 3, "seeds_b": 3,
              "settings": {}, "breakdown": {"occlusion=2": {"delta": 0.04, "ci_low": 0.01, "ci_high": 0.07},
                                            "scale=small": {"delta": 0.01, "ci_low": -0.01, "ci_high": 0.03}}}
    boot = [e for e in subset_effects(records, [report]) if "compare_ap" in e.source]
    assert [round(e.value, 6) for e in boot] == [4.0, 1.0] and all(e.seeds == 3 for e in boot)
    assert judge(boot) == ("inconclusive", "CI includes 0 (small faces (<50 px), ECA-CBAM parallel − "
                                           "ECA-CBAM sequential)")


def test_latency_effects_pair_the_rounds_of_the_last_session():
    runs = crafted_runs(offset={CBAM: 32.4, SEQUENTIAL: 31.0, PARALLEL: 31.0, "none": 30.0})
    summary = pd.DataFrame([{"session": "s", "device_name": "cpu (2 threads)", "input_h": 640, "input_w": 640,
                             "batch": 1, "threads": 2}])
    par_seq, seq_cbam = latency_effects(runs, summary)
    assert par_seq.side == "includes 0" and seq_cbam.side == "agrees" and seq_cbam.value == pytest.approx(-1.4, abs=0.2)
    assert "2 threads" in par_seq.dataset and par_seq.seeds is None
    verdict, reason = judge([par_seq, seq_cbam])
    assert verdict == "inconclusive" and "CI includes 0 (ECA-CBAM parallel − ECA-CBAM sequential)" in reason
    assert latency_effects(runs[runs["model"] != CBAM], summary) == []


def scalars(reach: dict[str, list[int]], dataset: str = "widerface", epochs: int = 30) -> pd.DataFrame:
    """val AP rising linearly to 60 at the given epoch, then flat at 60 (+ a per-run plateau offset)."""
    rows = []
    for model, epochs_to_60 in reach.items():
        for seed, reach_at in enumerate(epochs_to_60):
            for step in range(0, epochs + 1, 2):
                value = 60.0 * min(1.0, step / reach_at) + (seed if step >= reach_at else 0)
                for tag in ("val/ap_easy", "val/ap_medium", "val/ap_hard"):
                    rows.append({"run": f"{model}_s{seed}", "model": model, "dataset": dataset, "seed": seed,
                                 "tag": tag, "step": step, "value": value})
    return pd.DataFrame(rows)


def test_convergence_effect_uses_a_common_threshold_and_the_seed_spread():
    (e,), note = convergence_effects(scalars({PARALLEL: [8, 10, 8], SEQUENTIAL: [18, 20, 20]}))
    # threshold 0.9 * 60 = 54: crossed at 0.9 * reach, rounded up to the 2-epoch grid
    assert e.value == pytest.approx(np.mean([18, 18, 18]) - np.mean([8, 10, 8]))
    assert e.claimed == 10.0 and e.seeds == 3 and e.has_ci and e.unit == "epochs"
    assert "every 2 epoch(s)" in note and "54.0" in note
    assert judge([e])[0] == "supported"
    (single,), _ = convergence_effects(scalars({PARALLEL: [8], SEQUENTIAL: [20]}))
    assert judge([single]) == ("inconclusive", "single seed")
    assert convergence_effects(scalars({PARALLEL: [8]}))[0] == []
    assert convergence_effects(pd.DataFrame(columns=["tag"]))[1] == "no val AP logged in the training runs"


def test_attention_effects_orient_parallel_minus_sequential():
    pairs = [{"model_a": PARALLEL, "model_b": SEQUENTIAL, "level": "P3", "mask": "hybrid", "metric": "energy_gain",
              "delta": -0.05, "ci_low": -0.08, "ci_high": -0.02, "verdict": "lower"},
             {"model_a": SEQUENTIAL, "model_b": PARALLEL, "level": "P3", "mask": "hybrid", "metric": "entropy",
              "delta": -0.01, "ci_low": -0.02, "ci_high": 0.01, "verdict": "indistinguishable"},
             {"model_a": CBAM, "model_b": PARALLEL, "level": "P3", "mask": "hybrid", "metric": "energy_gain",
              "delta": 0.3, "ci_low": 0.2, "ci_high": 0.4, "verdict": "higher"}]
    gain, entropy = attention_effects({"dataset": "widerface", "pairs": pairs})
    assert gain.value == pytest.approx(0.05) and (gain.ci_low, gain.ci_high) == pytest.approx((0.02, 0.08))
    assert gain.side == "agrees" and entropy.expected == "lower" and entropy.side == "includes 0"
    assert judge([gain, entropy]) == ("inconclusive", "single seed (there: 1 of 2 CIs on the predicted side of 0, "
                                                      "0 on the other)")
    seeded = attention_effects({"dataset": "widerface", "pairs": pairs, "seeds": {PARALLEL: 3, SEQUENTIAL: 3}})
    assert [e.seeds for e in seeded] == [3, 3]
    assert judge(seeded) == ("inconclusive", "CI includes 0 (normalised entropy at P3)")
    assert judge(seeded[:1])[0] == "supported"
    assert attention_effects(None) == []


def test_rows_and_markdown_cover_every_hypothesis():
    comp = comparison({SEQUENTIAL: [80.0, 80.5, 79.5], PARALLEL: [86.0, 86.5, 87.0], CBAM: [84.0, 84.2, 84.1]})
    runs = crafted_runs(offset={CBAM: 32.4, SEQUENTIAL: 31.0, PARALLEL: 30.0, "none": 29.0})
    rows = hypothesis_rows(comp, [], [], runs, pd.DataFrame(), scalars({PARALLEL: [8, 10, 8], SEQUENTIAL: [18] * 3}),
                           None)
    assert [r.key for r in rows] == [h.key for h in HYPOTHESES] == list("abcdef")
    by = {r.key: r for r in rows}
    assert by["a"].verdict == "supported" and "+6.50" in by["a"].effect  # +6.5 mAP with a CI reaching 6.5
    assert by["b"].verdict == "supported"
    assert by["c"].verdict == "inconclusive" and "no per-attribute AP" in by["c"].reason
    assert by["d"].verdict == "supported" and "threshold" in by["d"].reason
    assert by["e"].verdict == "inconclusive" and "no attention stats" in by["e"].reason
    assert by["f"].verdict == "supported" and "random input" in by["f"].dataset
    md = "\n".join(hypotheses_markdown(rows))
    assert md.count("| (") == 6 and "## Hypotheses" in md


def test_conclusion_ranks_nothing_that_its_cis_do_not_support(tmp_path: Path):
    root = tmp_path / "results"
    root.mkdir()
    close = comparison({SEQUENTIAL: [80.0, 81.0, 79.0], PARALLEL: [80.5, 79.5, 81.5], CBAM: [80.2, 79.6, 80.9]})
    close.to_csv(root / "comparison_table.csv", index=False)
    md = build_conclusion(root)
    assert "use it" not in md and "Best" not in md and "Fastest" not in md
    assert "indistinguishable" in md and "## Hypotheses" in md
    assert "the same parameters and no latency verdict separates them" in md  # 476,345 each: no tie-break
    assert "**inconclusive** | CI includes 0" in md

    clear = comparison({SEQUENTIAL: [80.0, 80.5, 79.5], PARALLEL: [86.0, 86.5, 87.0], CBAM: [84.0, 84.2, 84.1]})
    clear.to_csv(root / "comparison_table.csv", index=False)
    md = build_conclusion(root)
    assert "**ECA-CBAM parallel** has a higher mAP than every other model" in md and "use it" in md

    single = comparison({SEQUENTIAL: [80.0], PARALLEL: [86.0], CBAM: [84.0]})
    single.to_csv(root / "comparison_table.csv", index=False)
    md = build_conclusion(root)
    assert "No recommendation" in md and "use it" not in md and "single seed" in md


def test_conclusion_cli(tmp_path: Path, capsys):
    root = make_results_root(tmp_path / "results")
    (root / "eval" / "x.json").write_text(json.dumps(eval_payload(PARALLEL, "widerface", 1.0)))
    out = tmp_path / "report" / "conclusion.md"
    assert main(["--results", str(root), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# FeatherFace Lab — conclusion") and "## Hypotheses" in text
    assert exit_status(main, ["--results", str(tmp_path / "absent"), "--out", str(out)]) == 2
    assert "argument --results: " in (err := capsys.readouterr().err) and "absent': folder not found" in err
