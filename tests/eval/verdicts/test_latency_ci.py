"""Latency statistics on crafted timings: bootstrap CI of a median, paired differences, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from eval.verdicts.latency_ci import (
    MIN_ROUNDS,
    bootstrap_median_ci,
    paired_difference,
    paired_ratio,
    precision_note,
    ratios_to,
    summarize_runs,
    verdict,
)


def crafted_runs(rounds: int = 120, offset: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Per round a shared load term (large, as on a busy machine) plus a fixed cost per model plus small noise."""
    rng = np.random.default_rng(seed)
    offset = offset or {"none": 30.0, "cbam": 32.4, "eca_cbam": 31.0, "twin": 30.0}
    load = rng.gamma(2.0, 4.0, rounds)  # mean 8 ms, heavy right tail
    rows = [{"session": "s", "round": r, "position": i, "model": m, "ms": cost + load[r] + rng.normal(0, 0.2)}
            for r in range(rounds) for i, (m, cost) in enumerate(offset.items())]
    return pd.DataFrame(rows)


def test_median_ci_contains_the_median_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small, large = rng.normal(50, 5, 20), rng.normal(50, 5, 2000)
    m, lo, hi = bootstrap_median_ci(small)
    assert lo <= m <= hi and m == pytest.approx(np.median(small))
    _, lo2, hi2 = bootstrap_median_ci(large)
    assert hi2 - lo2 < (hi - lo) / 3
    assert bootstrap_median_ci(small) == bootstrap_median_ci(small)  # seeded: reproducible
    m, lo, hi = bootstrap_median_ci([3.0] * (MIN_ROUNDS - 1))
    assert m == 3.0 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in bootstrap_median_ci([]))


def test_verdict_needs_the_ci_to_exclude_zero():
    assert verdict(0.1, 2.0) == "slower" and verdict(-2.0, -0.1) == "faster"
    assert verdict(-0.1, 2.0) == "indistinguishable" and verdict(0.0, 1.0) == "indistinguishable"
    assert verdict(float("nan"), float("nan")) == "indistinguishable"


def test_pairing_resolves_a_difference_that_the_medians_alone_cannot():
    runs = crafted_runs()
    d = paired_difference(runs, "cbam", "none")
    assert d.median_ms == pytest.approx(2.4, abs=0.15) and d.verdict == "slower" and d.rounds == 120
    assert d.ci_low_ms > 2.0 and d.ci_high_ms < 2.8
    # Unpaired, the load swamps it: the medians' CIs overlap.
    rows = {r["model"]: r for r in summarize_runs(runs)}
    assert rows["cbam"]["median_ci_low_ms"] < rows["none"]["median_ci_high_ms"]
    assert paired_difference(runs, "none", "cbam").verdict == "faster"
    assert paired_difference(runs, "twin", "none").verdict == "indistinguishable"
    same = paired_difference(runs, "cbam", "cbam")
    assert (same.median_ms, same.ci_low_ms, same.ci_high_ms) == (0.0, 0.0, 0.0)
    assert "is slower than none" in d.sentence() and "CBAM" in d.sentence({"cbam": "CBAM"})
    with pytest.raises(KeyError, match="not timed"):
        paired_difference(runs, "cbam", "eca_cbam_parallel")


def test_pairs_only_rounds_where_both_ran():
    runs = crafted_runs(rounds=30)
    runs = runs[~((runs["model"] == "none") & (runs["round"] < 10))]
    assert paired_difference(runs, "cbam", "none").rounds == 20


def test_summary_rows_and_order():
    runs = crafted_runs()
    rows = summarize_runs(runs, order=["eca_cbam", "cbam"])
    assert [r["model"] for r in rows] == ["eca_cbam", "cbam", "none", "twin"]
    by = {r["model"]: r for r in rows}
    assert by["none"]["overhead_vs_none_ms"] == 0.0 and by["none"]["overhead_verdict"] == "indistinguishable"
    assert by["cbam"]["overhead_verdict"] == "slower" and by["twin"]["overhead_verdict"] == "indistinguishable"
    assert by["eca_cbam"]["overhead_vs_none_ms"] == pytest.approx(1.0, abs=0.15)
    no_base = summarize_runs(runs[runs["model"] != "none"])
    assert all(math.isnan(r["overhead_vs_none_ms"]) and r["overhead_verdict"] == "" for r in no_base)


def test_precision_note_reports_the_widest_ci():
    rows = summarize_runs(crafted_runs())
    widest = max((r["overhead_ci_high_ms"] - r["overhead_ci_low_ms"]) / 2 for r in rows)
    note = precision_note(rows)
    assert f"{widest:.1f} ms" in note and "paired differences" in note
    few = summarize_runs(crafted_runs(rounds=5))
    assert "Precision unknown" in precision_note(few)


def test_paired_ratio_recovers_a_slowdown_factor_under_load():
    """b's cost swings with a shared per-round load; a costs 1.4x b in every round (plus noise). The paired
    ratio finds 1.4 with a CI narrow enough to place it between 1.3 and 1.5."""
    rng = np.random.default_rng(1)
    base = 10.0 * rng.gamma(4.0, 0.5, 60)  # 20 ms median, wide spread
    rows = [{"session": "s", "round": r, "model": m, "ms": v}
            for r in range(60) for m, v in (("b", base[r]), ("a", 1.4 * base[r] * rng.normal(1, 0.01)))]
    ratio = paired_ratio(pd.DataFrame(rows), "a", "b")
    assert ratio.rounds == 60
    assert ratio.ci_low < 1.4 < ratio.ci_high
    assert ratio.within(1.5) == "within" and ratio.within(1.3) == "over" and ratio.within(1.4) == "undecided"
    assert ratio.text().startswith("1.40x (95% CI 1.3")
    assert paired_ratio(pd.DataFrame(rows), "b", "b").ratio == 1.0
    few = paired_ratio(pd.DataFrame(rows[: 2 * (MIN_ROUNDS - 1)]), "a", "b")
    assert "no CI" in few.text() and few.within(1.5) == "undecided"
    with pytest.raises(KeyError, match="not timed"):
        paired_ratio(pd.DataFrame(rows), "a", "zzz")
    assert list(ratios_to(pd.DataFrame(rows), "b")) == ["a"]
    assert ratios_to(pd.DataFrame(rows), "retinaface_mnet") == {}
