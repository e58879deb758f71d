"""Heatmap quality, measured: do the attention masks look at the faces?

For every val image with ground-truth faces, each model runs one real forward pass
(``FeatherFace.get_attention_heatmaps``; nothing is recomputed) and, for each level (stage1-3,
P3-P5) and each spatial kind of mask (``spatial``, ``hybrid``), this module records:

* ``energy_in_boxes``: share of the mask's mass inside the union of face boxes. The mask is
  upsampled to the image exactly as the overlay does (``core.overlay.upsample_mask``).
* ``area_in_boxes``: share of the image area inside the boxes, the chance level of the two
  metrics above and below (a mask blind to faces scores it on average).
* ``pointing_game``: does the mask's maximum fall in a box? With tied maxima, the share of tied
  pixels inside boxes (the expected hit under random tie breaking); no pixel tolerance.
* ``entropy``: Shannon entropy of the mask taken as a distribution over its cells (feature
  resolution), divided by log(cells): 1 = spread evenly, lower = concentrated ("denser" maps).
* ``share_above_half``: share of mask cells above 0.5 (how much of the map the gate lets through).
* ``energy_gain``: energy_in_boxes - area_in_boxes per image (how far above chance).

Per model, level, kind and metric the report gives the mean over images with a 95% percentile
bootstrap CI over images, and for every pair of models the paired difference (same image
resamples) with its CI and a verdict (``higher`` / ``lower`` / ``indistinguishable``: does the CI
exclude 0). Boxes: every annotated face of the official ``.mat`` ground truth with w, h > 0,
pixel columns ``floor(x) .. ceil(x + w)`` clipped to the image; images without such a face are
skipped (counted in the report). Models without attention (``none``, baselines) are skipped.

CLI: ``python -m eval.attention_stats --data ROOT --weights-dir DIR --out FILE.json``.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from tqdm import tqdm

from core.artifacts import DEFAULT_RESULTS, ResultsFileError, atomic_write_json, detect_dataset
from core.checkpoint import CheckpointError, load_checkpoint
from core.cli_paths import CliParser, check_defaults, fail, input_dir, output_file, read_problem
from core.config import COMPARED_MODELS, MODEL_CONFIGS, display_name, model_color
from core.data.wider_gt import WiderGTError, load_wider_gt
from core.detector import LEVELS, STAGES, FeatherFace
from core.device import select_device
from core.hashing import file_sha256
from core.overlay import upsample_mask
from eval.attention_view import fit_image
from eval.ci import ci_verdict, percentile_interval
from eval.predict import PredictError, list_val_images, read_rgb
from eval.results import (
    WeightsError,
    add_data_and_weights_args,
    display_path,
    resolve_all_weights,
    resolve_weights,
)
from eval.roots import SourceError, confine

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
DEFAULT_OUT = "attention_stats.json"


class AttentionStatsError(ValueError):
    """The data, weights or a report file cannot be used; the message says which and why."""


# ------------------------------------------------------------------------------ per-image metrics


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


# ------------------------------------------------------------------------------------ summaries


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


# --------------------------------------------------------------------------------------- runner


def _fit(rgb: np.ndarray, boxes: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Downscale (never upscale) an image whose long side exceeds max_side, boxes with it."""
    if max_side is None:
        return rgb, boxes
    fitted, scale = fit_image(rgb, max_side)
    return fitted, boxes * scale if scale != 1.0 else boxes


def attention_stats(
    models: Mapping[str, FeatherFace | Sequence[FeatherFace]],
    data: Path | str,
    gt_dir: Path | str | None = None,
    limit: int | None = None,
    max_side: int | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    progress: bool = True,
) -> dict[str, Any]:
    """Report (JSON-ready) for already loaded models over the val images of `data` with GT faces.

    A model may come with several checkpoints (training seeds): each image's values are then the
    mean over its seeds (the CI covers the image sample, seeds taken as given), and every row also
    gives ``seeds`` and ``seed_sd``, the spread of the seeds' own means.
    """
    data = Path(data)
    dataset = detect_dataset(data)
    gt = load_wider_gt(gt_dir if gt_dir is not None else data / "ground_truth")
    entries = list_val_images(data)
    seeds = {m: [v] if isinstance(v, torch.nn.Module) else list(v) for m, v in models.items()}
    skipped_models = sorted(m for m, ms in seeds.items() if not ms or not all(x.has_attention for x in ms))
    used = {m: [x.eval() for x in ms] for m, ms in seeds.items() if m not in skipped_models}
    if not used:
        raise AttentionStatsError(f"none of {sorted(models)} has attention masks to measure")
    jobs, no_faces, not_in_gt = [], 0, 0
    for event, image in entries:
        im = gt.index.get((event, Path(image).stem))
        if im is None:
            not_in_gt += 1
        elif not np.any((im.boxes[:, 2] > 0) & (im.boxes[:, 3] > 0)):
            no_faces += 1
        else:
            jobs.append((event, image, im.boxes))
    jobs = jobs[:limit]
    if not jobs:
        raise AttentionStatsError(f"{data}: no val image with a ground-truth face ({len(entries)} listed, "
                                  f"{no_faces} without faces, {not_in_gt} not in the ground truth)")
    shape = (len(jobs), len(ALL_LEVELS), len(MASK_KINDS), len(METRICS))
    per_seed = {m: np.full((len(ms), *shape), math.nan) for m, ms in used.items()}
    for i, (event, image, boxes) in enumerate(tqdm(jobs, desc="attention stats", unit="img", disable=not progress)):
        rgb, scaled = _fit(read_rgb(data / "val" / "images" / event / image), boxes, max_side)
        inside = box_union(scaled, *rgb.shape[:2])
        for m, ms in used.items():
            for k, model in enumerate(ms):
                for (level, kind), values in heatmap_metrics(model.get_attention_heatmaps(rgb), inside).items():
                    per_seed[m][k, i, ALL_LEVELS.index(level), MASK_KINDS.index(kind)] = [values[x] for x in METRICS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (e.g. an all-zero mask) stay NaN
        per_image = {m: np.nanmean(v, axis=0) for m, v in per_seed.items()}
        seed_means = {m: np.nanmean(v, axis=1).reshape(len(v), -1) for m, v in per_seed.items()}
    rows, pairs = summarise(per_image, resamples, seed, confidence)
    for row in rows:
        j = (ALL_LEVELS.index(row["level"]) * len(MASK_KINDS) + MASK_KINDS.index(row["mask"])) * len(METRICS) \
            + METRICS.index(row["metric"])
        means = seed_means[row["model"]][:, j]
        row["seeds"] = len(means)
        row["seed_sd"] = float(np.nanstd(means, ddof=1)) if np.sum(~np.isnan(means)) > 1 else None
    return {
        "dataset": dataset, "data": display_path(data), "created": datetime.now().isoformat(timespec="seconds"),
        "models": sorted(used), "seeds": {m: len(ms) for m, ms in used.items()}, "skipped_models": skipped_models,
        "num_images": len(jobs), "images_without_faces": no_faces, "images_not_in_gt": not_in_gt, "limit": limit,
        "max_side": max_side, "levels": list(ALL_LEVELS), "masks": list(MASK_KINDS), "metrics": list(METRICS),
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence,
                      "over": "images (seeds averaged per image, taken as given)"},
        "rows": rows, "pairs": pairs,
    }


# ----------------------------------------------------------------------------- page helpers


def load_report(path: Path | str, root: Path | str | None = None) -> dict[str, Any]:
    """A report written by this CLI, checked enough for the page; errors name the file. With `root`, a
    path resolving outside it (a symlink to a file elsewhere) is refused before anything is read."""
    path = Path(path)
    if root is not None:
        try:
            confine(path, root)
        except SourceError as exc:
            raise AttentionStatsError(str(exc)) from None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AttentionStatsError(f"{path}: unreadable attention-stats report ({read_problem(exc)})") from None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list) or "dataset" not in report:
        raise AttentionStatsError(f"{path}: not an attention-stats report (needs 'dataset' and 'rows')")
    columns = {"model", "level", "mask", "metric", "mean", "ci_low", "ci_high"}
    if any(not isinstance(r, dict) or not columns <= set(r) for r in report["rows"]):
        raise AttentionStatsError(f"{path}: a row lacks one of {sorted(columns)}")
    return report


def stats_table(report: Mapping[str, Any], level: str, mask: str) -> pd.DataFrame:
    """One level and mask kind: a row per model, "mean [low, high]" per metric (for st.dataframe), with the
    seed spread "sd s" when a model has several seeds."""
    frame = pd.DataFrame(report["rows"])
    part = frame[(frame["level"] == level) & (frame["mask"] == mask)]
    out = []
    for model, group in part.groupby("model", sort=False):
        seeds = int(group["seeds"].max()) if "seeds" in group else 1
        row: dict[str, Any] = {"model": display_name(str(model)), "seeds": seeds}
        for r in group.to_dict("records"):
            sd = r.get("seed_sd")
            spread = f" sd {sd:.3f}" if isinstance(sd, float) and not math.isnan(sd) else ""
            row[METRIC_LABELS.get(r["metric"], r["metric"])] = \
                f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]{spread}"
        out.append(row)
    return pd.DataFrame(out)


def pair_table(report: Mapping[str, Any], level: str, mask: str, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Paired model differences at one level and mask kind, with CI and verdict."""
    frame = pd.DataFrame(report.get("pairs") or [], columns=["model_a", "model_b", "level", "mask", "metric",
                                                             "delta", "ci_low", "ci_high", "verdict"])
    part = frame[(frame["level"] == level) & (frame["mask"] == mask) & frame["metric"].isin(metrics)]
    return pd.DataFrame({
        "B - A": [f"{display_name(b)} - {display_name(a)}" for a, b in zip(part["model_a"], part["model_b"],
                                                                            strict=True)],
        "metric": [METRIC_LABELS.get(m, m) for m in part["metric"]],
        "delta": part["delta"].to_numpy(), "CI low": part["ci_low"].to_numpy(), "CI high": part["ci_high"].to_numpy(),
        "verdict": part["verdict"].to_numpy(),
    })


def stats_figure(report: Mapping[str, Any], level: str, mask: str,
                 metrics: Sequence[str] = ("energy_in_boxes", "pointing_game", "entropy", "share_above_half")
                 ) -> go.Figure:
    """Grouped bars (one group per metric, one bar per model) with 95% CI whiskers; the chance level
    (area in boxes) drawn as a dashed line."""
    frame = pd.DataFrame(report["rows"])
    part = frame[(frame["level"] == level) & (frame["mask"] == mask)]
    fig = go.Figure()
    for model, group in part.groupby("model", sort=False):
        g = group.set_index("metric").reindex(list(metrics))
        fig.add_trace(go.Bar(
            x=[METRIC_LABELS.get(m, m) for m in metrics], y=g["mean"], name=display_name(str(model)),
            marker_color=model_color(str(model)),
            error_y={"type": "data", "symmetric": False, "array": g["ci_high"] - g["mean"],
                     "arrayminus": g["mean"] - g["ci_low"]}))
    chance = part[part["metric"] == "area_in_boxes"]["mean"]
    if len(chance):
        fig.add_hline(y=float(chance.mean()), line_dash="dash", line_color="#555",
                      annotation_text=f"chance (face area share) {float(chance.mean()):.3f}")
    fig.update_layout(barmode="group", height=340, yaxis={"range": [0, 1], "title": ""},
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.25},
                      title={"text": f"{level}, {mask} mask (mean over images, 95% CI)", "font": {"size": 13}})
    return fig


# ------------------------------------------------------------------------------------------ CLI


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.attention_stats",
                       description="Heatmap quality per model and level over the val images.")
    add_data_and_weights_args(parser)
    parser.add_argument("--out", type=output_file, default=str(DEFAULT_RESULTS / DEFAULT_OUT),
                        help=f"output JSON (default {DEFAULT_RESULTS / DEFAULT_OUT}, where the Heatmaps page reads it)")
    parser.add_argument("--models", nargs="+", default=list(COMPARED_MODELS), choices=sorted(MODEL_CONFIGS))
    parser.add_argument("--gt", type=input_dir, default=None,
                        help="ground-truth .mat folder (default <data>/ground_truth)")
    parser.add_argument("--limit", type=int, default=None, help="first N val images with faces only")
    parser.add_argument("--resize-long", type=int, default=None, metavar="N",
                        help="downscale images whose long side exceeds N px (default: original size)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples over images for the CIs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--all-seeds", action="store_true",
                        help="every checkpoint per model under --weights-dir (a study: one per seed), seeds averaged "
                             "per image; default: the newest per model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_defaults(parser, args)  # a default input that is missing stops here
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = select_device(args.device)
        chosen = (resolve_all_weights(args.weights_dir, args.models) if args.all_seeds
                  else list(resolve_weights(args.weights_dir, args.models).items()))
        models: dict[str, list[torch.nn.Module]] = {}
        for m, p in chosen:
            models.setdefault(m, []).append(load_checkpoint(p, expected_name=m, map_location=device)[0])
        report = attention_stats(models, args.data, args.gt, args.limit, args.resize_long, args.resamples, args.seed)
    except (AttentionStatsError, WeightsError, CheckpointError, PredictError, WiderGTError, ResultsFileError,
            RuntimeError, ValueError) as exc:
        return fail(exc)
    report["weights"] = {m: [{"path": display_path(p), "sha256": file_sha256(p)} for n, p in chosen if n == m]
                         for m in models}
    if not args.all_seeds:  # one checkpoint per model: keep the flat form
        report["weights"] = {m: files[0] for m, files in report["weights"].items()}
    atomic_write_json(args.out, report)
    print(f"{report['dataset']}: {report['num_images']} images, models {', '.join(report['models'])} -> {args.out}")
    frame = pd.DataFrame(report["rows"])
    for kind in MASK_KINDS:
        view = frame[(frame["mask"] == kind) & frame["metric"].isin(["energy_in_boxes", "area_in_boxes",
                                                                      "pointing_game", "entropy"])]
        table = view.pivot_table(index=["level", "model"], columns="metric", values="mean", sort=False)
        print(f"\n{kind} mask (mean over images)\n{table.round(3).to_string()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
