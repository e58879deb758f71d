"""Heatmap quality, measured: do the attention masks look at the faces?

For every val image with ground-truth faces, each model runs one real forward pass
(``FeatherFace.get_attention_heatmaps``; nothing is recomputed) and, for each level (stage1-3,
P3-P5) and each spatial kind of mask (``spatial``, ``hybrid``), this module records:

* ``energy_in_boxes``: share of the mask's mass inside the union of face boxes. The mask is
  upsampled to the image exactly as the overlay does (``eval.attention.overlay.upsample_mask``).
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

import math
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import COMPARED_MODELS, MODEL_CONFIGS
from core.data.wider_gt import WiderGTError, load_wider_gt
from core.detector import FeatherFace
from core.device import select_device
from core.io.cli_paths import CliParser, fail, input_dir, output_file
from core.io.hashing import file_sha256
from core.lab.artifacts import DEFAULT_RESULTS, ResultsFileError, atomic_write_json, detect_dataset
from eval.attention.drawing import fit_image
from eval.attention.metrics import ALL_LEVELS, MASK_KINDS, METRICS, box_union, heatmap_metrics, summarise
from eval.runs.weights import (
    WeightsError,
    add_data_and_weights_args,
    display_path,
    resolve_all_weights,
    resolve_weights,
)
from eval.widerface.predict import PredictError, list_val_images, read_rgb

DEFAULT_OUT = "attention_stats.json"


class AttentionStatsError(ValueError):
    """The data, weights or a report file cannot be used; the message says which and why."""


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
    args = build_parser().parse_checked(argv)
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
