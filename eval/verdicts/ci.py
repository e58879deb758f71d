"""Percentile bootstrap intervals and the verdict they support, shared by every bootstrap in eval.

Why one place: attention_stats, compare_ap and latency_stats each turn resampled statistics into a
CI and a CI into a verdict; the rule (a verdict only when the CI excludes 0) must read the same in
all of them. Each keeps its own words for the two sides (higher/lower, better/worse, slower/faster).
"""

from __future__ import annotations

import math

import numpy as np

UNDECIDED = "indistinguishable"


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """(low, high) central percentile interval of bootstrap samples; NaNs ignored, (nan, nan) if none left."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if not samples.size:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def ci_verdict(low: float, high: float, above: str, below: str) -> str:
    """`above` if the whole CI is above 0, `below` if below, else "indistinguishable" (also for a NaN CI)."""
    if low > 0:
        return above
    if high < 0:
        return below
    return UNDECIDED
