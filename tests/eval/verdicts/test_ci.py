"""eval.verdicts.ci: the shared percentile interval and CI verdict, on known answers."""

import math

import numpy as np
import pytest

from eval.verdicts.ci import ci_verdict, percentile_interval


def test_percentile_interval_known_answer():
    assert percentile_interval(np.arange(101.0), 0.90) == pytest.approx((5.0, 95.0))
    assert percentile_interval(np.arange(101.0), 0.50) == (25.0, 75.0)


def test_percentile_interval_ignores_nan_and_returns_python_floats():
    low, high = percentile_interval(np.array([np.nan, *range(101), np.nan]), 0.90)
    assert (low, high) == pytest.approx((5.0, 95.0))
    assert type(low) is float and type(high) is float


@pytest.mark.parametrize("samples", [np.array([]), np.array([np.nan, np.nan])])
def test_percentile_interval_without_samples_is_nan(samples):
    assert all(math.isnan(v) for v in percentile_interval(samples, 0.95))


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.1, 2.0, "up"), (-2.0, -0.1, "down"), (-1.0, 1.0, "indistinguishable"),
    (0.0, 1.0, "indistinguishable"), (-1.0, 0.0, "indistinguishable"), (math.nan, math.nan, "indistinguishable"),
])
def test_ci_verdict_needs_the_ci_to_exclude_zero(low, high, expected):
    assert ci_verdict(low, high, "up", "down") == expected
