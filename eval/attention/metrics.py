"""Do the attention masks look at the faces? Per-image metrics of a mask against the face boxes, and their paired
bootstrap summaries per model."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.detector import LEVELS, STAGES
from eval.attention.overlay import upsample_mask
from eval.verdicts.ci import ci_verdict, percentile_interval

ALL_LEVELS: tuple[str, ...] = (*STAGES, *LEVELS)


MASK_KINDS: tuple[str, ...] = ("spatial", "hybrid")


METRICS: tuple[str, ...] = (
    "energy_in_boxes", "area_in_boxes", "pointing_game", "energy_gain", "entropy", "share_above_half",
)


METRIC_LABELS: dict[str, str] = {
    "energy_in_boxes": "mask energy in face boxes",
    "area_in_boxes": "image area in face boxes (chance)",
    "pointing_game": "pointing game (max in a box)",
    "energy_gain": "energy - area (above chance)",
    "entropy": "normalised entropy (1 = uniform)",
    "share_above_half": "share of cells > 0.5",
}


def box_union(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels inside any x y w h box (columns floor(x)..ceil(x + w), clipped); w, h <= 0 skipped."""
    inside = np.zeros((height, width), dtype=bool)
    for x, y, w, h in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if w <= 0 or h <= 0:
            continue
        x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
        x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
        if x1 > x0 and y1 > y0:
            inside[y0:y1, x0:x1] = True
    return inside


def mask_metrics(mask: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """Every metric of one (h, w) feature-resolution mask against an (H, W) box-union image."""
    mask = np.asarray(mask, dtype=np.float64)
    up = upsample_mask(mask, *inside.shape).astype(np.float64)
    total = up.sum()
    area = float(inside.mean())
    energy = float(up[inside].sum() / total) if total > 0 else math.nan
    at_peak = up == up.max()
    pointing = float(inside[at_peak].mean())
    mass = mask.sum()
    if mass > 0 and mask.size > 1:
        p = mask.ravel() / mass
        p = p[p > 0]
        entropy = float(-(p * np.log(p)).sum() / math.log(mask.size))
    else:
        entropy = math.nan
    return {
        "energy_in_boxes": energy, "area_in_boxes": area, "pointing_game": pointing,
        "energy_gain": energy - area, "entropy": entropy, "share_above_half": float((mask > 0.5).mean()),
    }


def heatmap_metrics(heatmaps: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                    inside: np.ndarray) -> dict[tuple[str, str], dict[str, float]]:
    """(level, kind) -> metrics for every level present in `get_attention_heatmaps` output."""
    flat = {**heatmaps.get("backbone", {}), **heatmaps.get("bifpn", {})}
    return {(level, kind): mask_metrics(flat[level][f"{kind}_mask"], inside)
            for level in ALL_LEVELS if level in flat for kind in MASK_KINDS}


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(R, columns) resampled column means over rows (images); NaNs excluded per column."""
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    weights = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    weights = weights.reshape(resamples, n).astype(np.float64)
    valid = ~np.isnan(values)
    sums = weights @ np.where(valid, values, 0.0)
    counts = weights @ valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def pair_verdict(ci_low: float, ci_high: float) -> str:
    """B - A: "higher" if the CI is above 0, "lower" if below, else "indistinguishable"."""
    return ci_verdict(ci_low, ci_high, "higher", "lower")


def summarise(per_image: Mapping[str, np.ndarray], resamples: int = 1000, seed: int = 0,
              confidence: float = 0.95) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Summary rows and paired model differences from per-image values.

    per_image: model -> (images, levels, kinds, metrics) array over the same images (NaN where a
    value is undefined). Every model is resampled with the same image draws, so differences are
    paired. Returns (rows: model, level, mask, metric, mean, ci_low, ci_high, n;
    pairs: model_a, model_b, level, mask, metric, delta, ci_low, ci_high, verdict).
    """
    models = list(per_image)
    shapes = {v.shape for v in per_image.values()}
    if len(shapes) != 1:
        raise ValueError(f"per-image arrays differ in shape: {shapes}")
    shape = shapes.pop()
    if shape[1:] != (len(ALL_LEVELS), len(MASK_KINDS), len(METRICS)):
        raise ValueError(f"per-image arrays must be (images, {len(ALL_LEVELS)}, {len(MASK_KINDS)}, {len(METRICS)})")
    n_images = shape[0]
    flat = np.concatenate([per_image[m].reshape(n_images, -1) for m in models], axis=1)
    boot = _bootstrap_means(flat, resamples, seed) if n_images else np.zeros((0, flat.shape[1]))
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(flat, axis=0) if n_images else np.full(flat.shape[1], math.nan)
    width = int(np.prod(shape[1:]))
    index = list(itertools.product(ALL_LEVELS, MASK_KINDS, METRICS))
    rows, pairs = [], []
    for k, model in enumerate(models):
        for j, (level, kind, metric) in enumerate(index):
            col = k * width + j
            low, high = percentile_interval(boot[:, col], confidence)
            rows.append({"model": model, "level": level, "mask": kind, "metric": metric,
                         "mean": float(mean[col]), "ci_low": low, "ci_high": high,
                         "n": int(np.sum(~np.isnan(flat[:, col])))})
    for (ka, a), (kb, b) in itertools.combinations(enumerate(models), 2):
        for j, (level, kind, metric) in enumerate(index):
            ca, cb = ka * width + j, kb * width + j
            low, high = percentile_interval(boot[:, cb] - boot[:, ca], confidence)
            delta = float(mean[cb] - mean[ca])
            pairs.append({"model_a": a, "model_b": b, "level": level, "mask": kind, "metric": metric,
                          "delta": delta, "ci_low": low, "ci_high": high,
                          "verdict": pair_verdict(low, high)})
    return rows, pairs
