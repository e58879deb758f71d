"""Differences between two models over their training seeds: mean difference with a Welch t interval.

Why Welch: the seeds of two models are independent runs with possibly different spreads, and with
3-5 seeds a t interval is honest about how little they say (a bootstrap over 3 values is not).
With fewer than 2 seeds on either side the spread is unknown: the CI is NaN and no verdict follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import stdtrit  # the t quantile (what stats.t.ppf calls), without scipy.stats

from eval.verdicts.ci import ci_verdict

LEVEL = 0.95


def welch_from_summary(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                       level: float = LEVEL) -> tuple[float, float, float]:
    """mean_b - mean_a and its Welch t interval from per-model mean, sample std and count."""
    diff = float(mean_b - mean_a)
    if n_a < 2 or n_b < 2 or not (math.isfinite(sd_a) and math.isfinite(sd_b)):
        return diff, float("nan"), float("nan")
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = float(stdtrit(dof, 0.5 + level / 2)) * se
    return diff, diff - half, diff + half


def welch_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """mean(b) - mean(a) with a Welch t interval; NaN CI with fewer than 2 values on a side."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not x.size or not y.size:
        return float("nan"), float("nan"), float("nan")
    sd_x = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    sd_y = float(y.std(ddof=1)) if y.size > 1 else float("nan")
    return welch_from_summary(float(x.mean()), sd_x, x.size, float(y.mean()), sd_y, y.size, level)


def difference_verdict(ci_low: float, ci_high: float) -> str:
    """"higher" / "lower" (b vs a) when the CI excludes 0, "indistinguishable" when it includes it,
    "single seed" when there is no CI."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "single seed"
    return ci_verdict(ci_low, ci_high, "higher", "lower")
