"""One command from trained weights to the results the dashboard reads.

For each compared model: predict the val list (resumable, `<out>/predictions/...`), evaluate with
the official protocol, write `<out>/eval/<model>__<dataset>__<tag>.json` (APs, PR curves,
per-attribute AP), the attention heatmap figure, and one comparison_table.csv row (AP in percent).
Latency of the four entries (the three plus "none", for the overhead) is appended to
latency_benchmark.csv. A rerun for the same (model, dataset, weights) replaces that row, never
duplicates it. Every input (data, ground truth, CSVs, checkpoints, image) is checked before any
long step starts, so a bad file fails in seconds and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from core.boxes.postprocess import NmsMethod
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import ABLATION, COMPARED_MODELS, MODEL_CONFIGS, TEST_KEEP_TOP_K, TEST_TOP_K
from core.data.wider_gt import WiderGTError, load_wider_gt
from core.device import device_name, select_device
from core.io.cli_paths import (
    CliParser,
    check_defaults,
    fail,
    input_dir,
    input_file,
    output_dir,
)
from core.io.hashing import file_sha256
from core.lab.artifacts import (
    COMPARISON_COLUMNS,
    COMPARISON_CSV,
    DATASETS,
    DEFAULT_RESULTS,
    LATENCY_CSV,
    REFERENCE_CSV,
    ResultsFileError,
    atomic_write_json,
    detect_dataset,
)
from core.lab.result_paths import artifact_stem, figure_path
from eval.attention.figures import FigureError, read_image_rgb, write_heatmap_figure
from eval.latency.lock import TimingBusy, say_once
from eval.latency.timing import DEFAULT_ROUNDS, DEFAULT_WARMUP, run_latency
from eval.latency.timing import check_csvs as check_latency_csvs
from eval.runs.results_csv import atomic_write_csv, read_results_csv
from eval.runs.weights import (
    WeightsError,
    _training_info,
    add_data_and_weights_args,
    display_path,
    resolve_all_weights,
    resolve_weights,
)
from eval.verdicts.reference import write_reference
from eval.widerface.predict import (
    PredictError,
    add_postprocess_args,
    list_val_images,
    postprocess_kwargs,
    predict_to_dir,
)
from eval.widerface.protocol import evaluate
from eval.widerface.submission import PredictionFormatError, read_predictions

KEY: tuple[str, ...] = ("model", "dataset", "weights")
DEFAULT_IMAGE = Path("assets/samples/astronaut.png")


def upsert_rows(path: Path | str, rows: list[dict[str, Any]], columns: tuple[str, ...],
                key: tuple[str, ...] = KEY) -> pd.DataFrame:
    """Replace rows with the same key in place, append new ones; a malformed file raises, untouched."""
    path = Path(path)
    new = pd.DataFrame(rows, columns=list(columns))
    if not path.exists():
        atomic_write_csv(new, path)
        return new
    old = read_results_csv(path, columns)
    keys = {tuple(str(r[k]) for k in key) for r in rows}
    old_keys = old[list(key)].astype(str).apply(tuple, axis=1)
    kept = old[~old_keys.isin(keys)]
    merged = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    # Keep the original order: replaced rows stay where they were, new keys go last.
    position = {k: i for i, k in enumerate(old_keys)}
    order = merged[list(key)].astype(str).apply(tuple, axis=1).map(lambda k: position.get(k, len(position)))
    merged = merged.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    atomic_write_csv(merged, path)
    return merged


def run_results(
    data: Path | str,
    weights_source: Path | str,
    out: Path | str = Path("results"),
    models: Sequence[str] = COMPARED_MODELS,
    dataset: str | None = None,
    gt_dir: Path | str | None = None,
    device: str = "auto",
    max_side: int | None = None,
    conf_thresh: float = 0.02,
    nms_thresh: float = 0.4,
    latency_hw: tuple[int, int] = (640, 640),
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    image: Path | str | None = DEFAULT_IMAGE,
    progress: bool = True,
    threads: int | None = None,
    *,
    all_seeds: bool = False,
    checkpoint: str = "Final",
    figures_per_model: bool = False,
    top_k: int = TEST_TOP_K,
    keep_top_k: int = TEST_KEEP_TOP_K,
    nms_method: NmsMethod = "pixel",
) -> pd.DataFrame:
    """Predict, evaluate, time and draw every model; returns the updated comparison table.

    Latency: the models plus "none" timed interleaved for `rounds` rounds on `threads` CPU threads
    (eval.latency.timing), every run kept in latency_runs.csv beside latency_benchmark.csv.
    `all_seeds`: one row per checkpoint found under the folder (every seed of a study) instead of the
    newest per model; `figures_per_model`: then draw the heatmap figure of the first checkpoint of each
    model only (the figures differ little between seeds, and weigh ~1 MB each).
    """
    data, out = Path(data), Path(out)
    comparison_csv, latency_csv = out / COMPARISON_CSV, out / LATENCY_CSV
    # 1. Check every input before the long steps.
    if comparison_csv.exists():
        read_results_csv(comparison_csv, COMPARISON_COLUMNS)
    check_latency_csvs(latency_csv)
    dataset = detect_dataset(data, dataset)
    num_images = len(list_val_images(data))
    gt = load_wider_gt(gt_dir if gt_dir is not None else data / "ground_truth")
    try:
        dev = select_device(device)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    chosen = (resolve_all_weights(weights_source, models, checkpoint) if all_seeds
              else list(resolve_weights(weights_source, models, checkpoint).items()))
    loaded = [(m, p, *load_checkpoint(p, expected_name=m, map_location=dev)) for m, p in chosen]
    if image is not None:
        read_image_rgb(image)
    print(f"{dataset} at {data}: {num_images} images, {gt.num_faces} faces; device {device_name(dev)}")
    write_reference(out / REFERENCE_CSV)  # published rows and targets, kept apart from measured rows

    # 2. Latency (the three plus "none" for the attention overhead).
    latency_models = [*models, *([ABLATION] if ABLATION not in models else [])]
    with tqdm(total=warmup + rounds, desc="latency rounds", unit="round", disable=not progress) as bar:
        rows = run_latency(latency_models, latency_hw, 1, rounds, warmup, dev, out_csv=latency_csv, threads=threads,
                           progress_callback=lambda done, _: bar.update(done - bar.n), on_wait=say_once(tqdm.write))
    latency = {r["model"]: r for r in rows}

    # 3. Per model: predict, evaluate, JSON, figure, table row (saved as soon as it is known).
    table = pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    drawn: set[str] = set()
    for model_name, ckpt_path, model, ckpt in loaded:
        weights = display_path(ckpt_path)
        stem = artifact_stem(model_name, dataset, weights)
        epochs, seed = _training_info(ckpt_path, ckpt)
        trained_on = ckpt.get("dataset")
        note = f" (trained on {trained_on})" if trained_on not in (None, dataset) else ""
        print(f"[{model_name}] {weights}{note}")
        pred_dir = out / "predictions" / stem
        predict_to_dir(model, data, pred_dir, max_side, conf_thresh, nms_thresh,
                       meta={"network": model_name, "weights_sha256": file_sha256(ckpt_path)},
                       on_change="restart", progress=progress, top_k=top_k, keep_top_k=keep_top_k,
                       nms_method=nms_method)
        result = evaluate(read_predictions(pred_dir, gt, strict=True).predictions, gt)
        ap = {k: 100.0 * v for k, v in result.ap.items()}
        ap["mAP"] = sum(ap.values()) / len(ap)
        lat = latency[model_name]
        row = {
            "model": model_name, "display_name": model.cfg.display_name,
            "params": model.get_parameter_count()["total"],
            **{k: round(v, 4) for k, v in ap.items()},
            "latency_ms": round(lat["median_ms"], 3), "latency_device": lat["device_name"],
            "dataset": dataset, "dataset_path": display_path(data), "weights": weights,
            "epochs": epochs, "seed": seed, "date": datetime.now().isoformat(timespec="seconds"),
        }
        atomic_write_json(out / "eval" / f"{stem}.json", {
            **row, "weights_sha256": file_sha256(ckpt_path), "ap_percent": ap,
            "predict": {"max_side": max_side, "conf_thresh": conf_thresh, "nms_thresh": nms_thresh,
                        "top_k": top_k, "keep_top_k": keep_top_k, "nms": nms_method,
                        "predictions": pred_dir.as_posix()},
            "latency": lat, "evaluation": result.to_dict(curves=True),
        })
        if image is not None and not model.has_attention:
            print(f"[{model_name}] no heatmap figure: the model has no attention blocks")
        elif image is not None and not (figures_per_model and model_name in drawn):
            drawn.add(model_name)
            write_heatmap_figure(model.eval(), image, figure_path(out, model_name, dataset, weights),
                                 weights_label=weights)
        table = upsert_rows(comparison_csv, [row], COMPARISON_COLUMNS)
        print(f"[{model_name}] easy {ap['easy']:.2f}  medium {ap['medium']:.2f}  hard {ap['hard']:.2f}  "
              f"mAP {ap['mAP']:.2f}  latency {lat['median_ms']:.1f} ms")
    return table


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.results",
                       description="Predict + evaluate + latency + figures for the compared models.")
    add_data_and_weights_args(parser)
    parser.add_argument("--out", type=output_dir, default=str(DEFAULT_RESULTS),
                        help=f"results folder (default {DEFAULT_RESULTS})")
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="default: from <data>/manifest.json")
    parser.add_argument("--gt", type=input_dir, default=None,
                        help="ground-truth .mat folder (default <data>/ground_truth)")
    parser.add_argument("--models", nargs="+", default=list(COMPARED_MODELS), choices=sorted(MODEL_CONFIGS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resize-long", type=int, default=None, metavar="N",
                        help="downscale val images whose long side exceeds N (default: original size)")
    add_postprocess_args(parser)
    parser.add_argument("--size", nargs=2, type=int, default=[640, 640], metavar=("H", "W"), help="latency input")
    parser.add_argument("--rounds", "--runs", dest="rounds", type=int, default=DEFAULT_ROUNDS,
                        help="latency: interleaved timed rounds, one run of each model per round")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="latency: untimed rounds first")
    parser.add_argument("--image", type=input_file, default=DEFAULT_IMAGE, help="image for the heatmap figures")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads, fixed for the whole command and recorded (default: torch's choice)")
    parser.add_argument("--all-seeds", action="store_true",
                        help="evaluate every checkpoint found under --weights-dir (one row per run/seed), not "
                             "only the newest per model")
    parser.add_argument("--checkpoint", default="Final", choices=("Final", "best"),
                        help="which checkpoint of a run folder to evaluate (default Final)")
    parser.add_argument("--figures-per-model", action="store_true",
                        help="with --all-seeds: one heatmap figure per model (its first checkpoint), not per row")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_defaults(parser, args, skip=("--image",) if args.no_figures else ())
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        table = run_results(args.data, args.weights_dir, args.out, args.models, args.dataset, args.gt, args.device,
                            args.resize_long, args.conf, args.nms_thresh, tuple(args.size), args.rounds, args.warmup,
                            None if args.no_figures else args.image, threads=args.threads, all_seeds=args.all_seeds,
                            checkpoint=args.checkpoint, figures_per_model=args.figures_per_model,
                            **postprocess_kwargs(args))
    except (ResultsFileError, WeightsError, CheckpointError, PredictError, PredictionFormatError, WiderGTError,
            FigureError, ValueError, KeyError, TimingBusy) as exc:
        return fail(exc)
    print(f"{args.out / COMPARISON_CSV}: {len(table)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
