"""Latency verdicts with uncertainty: bootstrap CIs of medians and of paired per-round differences.

Why paired: the variants are timed interleaved (one run of each per round), so a load spike on a
shared machine hits every variant of that round alike. The per-round difference a - b cancels it,
and its median with a bootstrap CI says whether a is slower, faster or indistinguishable from b.
A verdict needs the CI to exclude 0; anything else is "indistinguishable". Pure numpy/pandas: the
conclusion and the pages use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import ABLATION
from eval.verdicts.ci import ci_verdict, percentile_interval

RESAMPLES = 2000
LEVEL = 0.95
MIN_ROUNDS = 10
"""Below this many paired rounds a bootstrap CI of a median is not trusted: CI blank, no verdict."""
VERDICTS: tuple[str, ...] = ("slower", "faster", "indistinguishable")
BASELINE = ABLATION


def bootstrap_median_ci(values: np.ndarray | list[float], resamples: int = RESAMPLES, level: float = LEVEL,
                        seed: int = 0) -> tuple[float, float, float]:
    """(median, CI low, CI high): percentile bootstrap of the median; CI NaN under MIN_ROUNDS values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan"), float("nan")
    median = float(np.median(v))
    if v.size < MIN_ROUNDS:
        return median, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    medians = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    return (median, *percentile_interval(medians, level))


def verdict(ci_low: float, ci_high: float) -> str:
    """"slower" / "faster" when the CI of a - b excludes 0, else "indistinguishable" (also without a CI)."""
    return ci_verdict(ci_low, ci_high, "slower", "faster")


@dataclass(frozen=True)
class PairedDifference:
    """Median of the per-round differences a - b (ms) with its bootstrap CI, over `rounds` paired rounds."""

    a: str
    b: str
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    rounds: int

    @property
    def verdict(self) -> str:
        return verdict(self.ci_low_ms, self.ci_high_ms)

    def sentence(self, names: dict[str, str] | None = None) -> str:
        """E.g. "CBAM is slower than none by +2.40 ms (95% CI +1.90 to +2.50, 120 paired rounds)"."""
        names = names or {}
        a, b = names.get(self.a, self.a), names.get(self.b, self.b)
        ci = (f"95% CI {self.ci_low_ms:+.2f} to {self.ci_high_ms:+.2f} ms" if np.isfinite(self.ci_low_ms)
              else f"no CI: fewer than {MIN_ROUNDS} rounds")
        what = {"slower": f"is slower than {b}", "faster": f"is faster than {b}",
                "indistinguishable": f"is indistinguishable from {b}"}[self.verdict]
        return f"{a} {what}: median difference {self.median_ms:+.2f} ms ({ci}, {self.rounds} paired rounds)"


def _rounds_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows = (session, round), columns = model, values = ms."""
    keys = ["session", "round"] if "session" in runs.columns else ["round"]
    return runs.pivot_table(index=keys, columns="model", values="ms", aggfunc="first")


def _timed_together(runs: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The rounds where both a and b were timed, one column each; a KeyError names a model never timed."""
    table = _rounds_table(runs)
    for name in (a, b):
        if name not in table.columns:
            raise KeyError(f"{name!r} was not timed in these runs (timed: {sorted(table.columns)})")
    return table[list(dict.fromkeys((a, b)))].dropna()


def paired_difference(runs: pd.DataFrame, a: str, b: str, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = 0) -> PairedDifference:
    """Paired a - b over the rounds where both were timed (long-format runs: round, model, ms)."""
    both = _timed_together(runs, a, b)
    if a == b:
        return PairedDifference(a, b, 0.0, 0.0, 0.0, len(both))
    diff = (both[a] - both[b]).to_numpy()
    median, low, high = bootstrap_median_ci(diff, resamples, level, seed)
    return PairedDifference(a, b, median, low, high, int(diff.size))


@dataclass(frozen=True)
class PairedRatio:
    """Median of the per-round ratios a / b with its bootstrap CI, over `rounds` paired rounds: how many
    times b's latency a takes when both run under the same load (issue 19's "x RetinaFace" figure)."""

    a: str
    b: str
    ratio: float
    ci_low: float
    ci_high: float
    rounds: int

    def text(self) -> str:
        """E.g. "1.42x (95% CI 1.38-1.47)", or "1.42x (no CI: fewer than 10 rounds)"."""
        ci = (f"95% CI {self.ci_low:.2f}-{self.ci_high:.2f}" if np.isfinite(self.ci_low)
              else f"no CI: fewer than {MIN_ROUNDS} rounds")
        return f"{self.ratio:.2f}x ({ci})"

    def within(self, limit: float) -> str:
        """"within" / "over" `limit` when the CI is on one side of it, else "undecided"."""
        if not np.isfinite(self.ci_low):
            return "undecided"
        return "within" if self.ci_high <= limit else "over" if self.ci_low > limit else "undecided"


def paired_ratio(runs: pd.DataFrame, a: str, b: str, resamples: int = RESAMPLES, level: float = LEVEL,
                 seed: int = 0) -> PairedRatio:
    """Paired a / b over the rounds where both were timed (long-format runs: round, model, ms)."""
    both = _timed_together(runs, a, b)
    if a == b:
        return PairedRatio(a, b, 1.0, 1.0, 1.0, len(both))
    ratio = (both[a] / both[b]).to_numpy()
    median, low, high = bootstrap_median_ci(ratio, resamples, level, seed)
    return PairedRatio(a, b, median, low, high, int(ratio.size))


def ratios_to(runs: pd.DataFrame, reference: str, resamples: int = RESAMPLES, level: float = LEVEL,
              seed: int = 0) -> dict[str, PairedRatio]:
    """Every other model's `paired_ratio` to `reference` (first-appearance order); {} when it was not timed."""
    models = list(dict.fromkeys(runs["model"])) if "model" in runs.columns else []
    if reference not in models:
        return {}
    return {m: paired_ratio(runs, m, reference, resamples, level, seed) for m in models if m != reference}


def summarize_runs(runs: pd.DataFrame, baseline: str = BASELINE, batch: int = 1, resamples: int = RESAMPLES,
                   level: float = LEVEL, seed: int = 0,
                   order: list[str] | None = None) -> list[dict[str, float | str | int]]:
    """Per model (in `order`, default first appearance): the statistics columns of a latency_benchmark.csv row.

    Overhead columns compare with `baseline` (paired per round); blank when the baseline was not timed.
    """
    rows: list[dict[str, float | str | int]] = []
    present = list(dict.fromkeys(runs["model"]))
    models = [m for m in (order or []) if m in present] + [m for m in present if m not in (order or [])]
    for i, model in enumerate(models):
        t = runs.loc[runs["model"] == model, "ms"].to_numpy(dtype=np.float64)
        median, low, high = bootstrap_median_ci(t, resamples, level, seed + i)
        row: dict[str, float | str | int] = {
            "model": model, "runs": int(t.size), "mean_ms": float(t.mean()), "median_ms": median,
            "median_ci_low_ms": low, "median_ci_high_ms": high, "p90_ms": float(np.percentile(t, 90)),
            "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0, "fps": float(batch * 1000.0 / t.mean()),
            "overhead_vs_none_ms": float("nan"), "overhead_ci_low_ms": float("nan"),
            "overhead_ci_high_ms": float("nan"), "overhead_verdict": "",
        }
        if baseline in models:
            d = paired_difference(runs, model, baseline, resamples, level, seed + i)
            row |= {"overhead_vs_none_ms": d.median_ms, "overhead_ci_low_ms": d.ci_low_ms,
                    "overhead_ci_high_ms": d.ci_high_ms, "overhead_verdict": d.verdict}
        rows.append(row)
    return rows


def precision_note(rows: pd.DataFrame | list[dict]) -> str:
    """How fine a difference these rows can resolve: the widest overhead (else median) CI half-width."""
    frame = pd.DataFrame(rows)
    for low, high, what in (("overhead_ci_low_ms", "overhead_ci_high_ms", "paired differences to none"),
                            ("median_ci_low_ms", "median_ci_high_ms", "medians")):
        if low in frame and high in frame:
            half = ((pd.to_numeric(frame[high], errors="coerce") - pd.to_numeric(frame[low], errors="coerce")) / 2)
            half = half[(half > 0) & np.isfinite(half)]
            if len(half):
                span = (f"±{half.min():.2f}" if np.isclose(half.min(), half.max())
                        else f"±{half.min():.2f} to ±{half.max():.2f}")
                return (f"Precision: the 95% CIs of the {what} are {span} ms wide; differences smaller than "
                        f"about {half.max():.1f} ms cannot be told apart from noise.")
    return (f"Precision unknown: fewer than {MIN_ROUNDS} rounds per model (or a file written before CIs "
            "were recorded), so no difference here is a verdict.")
