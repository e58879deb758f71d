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

import argparse
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from core.artifacts import (
    COMPARISON_COLUMNS,
    COMPARISON_CSV,
    DATASETS,
    DEFAULT_DATA,
    DEFAULT_RESULTS,
    DEFAULT_RUNS,
    LATENCY_CSV,
    REFERENCE_CSV,
    RUN_JSON,
    ResultsFileError,
    atomic_write_csv,
    atomic_write_json,
    detect_dataset,
    read_results_csv,
)
from core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from core.cli_paths import CliParser, check_defaults, fail, input_dir, input_file, input_path, output_dir, read_problem
from core.config import ABLATION, COMPARED_MODELS, MODEL_CONFIGS, TEST_KEEP_TOP_K, TEST_TOP_K
from core.data.wider_gt import WiderGTError, load_wider_gt
from core.device import device_name, select_device
from core.hashing import file_sha256
from core.postprocess import NmsMethod
from core.study_manifest import parse_run_name
from eval.figures import FigureError, read_image_rgb, write_heatmap_figure
from eval.latency import DEFAULT_ROUNDS, DEFAULT_WARMUP, run_latency
from eval.latency import check_csvs as check_latency_csvs
from eval.predict import (
    PredictError,
    add_postprocess_args,
    list_val_images,
    postprocess_kwargs,
    predict_to_dir,
)
from eval.predictions import PredictionFormatError, read_predictions
from eval.reference import write_reference
from eval.timing_lock import TimingBusy, say_once
from eval.widerface import evaluate

KEY: tuple[str, ...] = ("model", "dataset", "weights")
DEFAULT_IMAGE = Path("assets/samples/astronaut.png")


class WeightsError(ValueError):
    """No usable checkpoint could be found for a model; the message says where it looked."""


@dataclass(frozen=True)
class Weights:
    """A checkpoint chosen for a model, with what it says about its training."""

    model: str
    path: Path
    epochs: int | None
    seed: int | None


def display_path(path: Path | str) -> str:
    """Path as stored in the tables: relative to the working directory when inside it, else absolute."""
    real = Path(path).resolve()
    try:
        return real.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return real.as_posix()


def weights_tag(weights: str) -> str:
    """Readable, stable file tag for a weights path string: `<run>-<stem>-<hash8>`.

    Derived from the `weights` column (not the file), so the dashboard can find a row's JSON even
    where the checkpoint itself is absent.
    """
    path = Path(weights)
    owner = next((p.name for p in path.parents if p.name and p.name != "weights"), "")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{owner}-{path.stem}" if owner else path.stem).strip("_.-")
    return f"{slug}-{hashlib.sha1(weights.encode()).hexdigest()[:8]}"


def artifact_stem(model: str, dataset: str, weights: str) -> str:
    return f"{model}__{dataset}__{weights_tag(weights)}"


def eval_json_path(results_root: Path | str, model: str, dataset: str, weights: str) -> Path:
    """Where the full evaluation of one comparison row lives."""
    return Path(results_root) / "eval" / f"{artifact_stem(model, dataset, weights)}.json"


def figure_path(results_root: Path | str, model: str, dataset: str, weights: str) -> Path:
    """Where the heatmap figure of one comparison row lives."""
    return Path(results_root) / "figures" / f"attention_heatmaps__{artifact_stem(model, dataset, weights)}.png"


def _path_names_model(path: Path) -> str | None:
    """A model name the file's own name or folder claims (cbam.pth, cbam_s1.pth, cbam/Final.pth), if any."""
    for name in (path.stem, path.parent.name):
        parsed = parse_run_name(name)
        for candidate in (name, parsed[0] if parsed else None):
            if candidate in MODEL_CONFIGS:
                return candidate
    return None


def _from_manifest(manifest: Path, models: Sequence[str]) -> dict[str, Path]:
    """{"weights": {model: path}}, {"models": {model: path | {"weights": path}}} or {model: path}.

    A model listed without a path uses `<manifest dir>/weights/<model>.pth`.
    Relative paths are taken from the manifest's folder.
    """
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{manifest}: unreadable weights manifest ({read_problem(exc)})") from None
    table = data.get("weights") or data.get("models") or data if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise WeightsError(f"{manifest}: expected a JSON object mapping model names to checkpoints")
    out = {}
    for model in models:
        entry = table.get(model)
        if isinstance(entry, dict):
            entry = entry.get("weights") or entry.get("path") or entry.get("checkpoint")
        if entry is None and model in table:
            entry = f"weights/{model}.pth"
        if not isinstance(entry, str):
            raise WeightsError(f"{manifest}: no checkpoint listed for {model!r}")
        out[model] = manifest.parent / entry
    return out


def _is_candidate(path: Path, checkpoint: str) -> bool:
    """`<checkpoint>.pth` in a run (Final.pth by default), or a file named after a model: cbam.pth, cbam_s1.pth."""
    if path.stem == checkpoint:
        return True
    parsed = parse_run_name(path.stem)
    return path.stem in MODEL_CONFIGS or (parsed is not None and parsed[0] in MODEL_CONFIGS)


def _scan_dir(root: Path, checkpoint: str = "Final") -> dict[str, list[Path]]:
    """Checkpoints under `root` per embedded model name; a path that names another model is an error."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.pth")):
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not _is_candidate(path, checkpoint):
            continue
        name = read_checkpoint(path).get("model_name")
        claimed = _path_names_model(path)
        if claimed is not None and claimed != name:
            raise CheckpointError(f"checkpoint {path} holds model {name!r}, but its path says {claimed!r}")
        found.setdefault(str(name), []).append(path)
    return found


def _missing(model: str, root: Path, checkpoint: str) -> WeightsError:
    return WeightsError(f"no checkpoint for {model!r} under {root} (looked for {checkpoint}.pth, {model}.pth and "
                        f"{model}_s<seed>.pth holding that model); pass a JSON manifest to choose files explicitly")


def _from_dir(root: Path, models: Sequence[str], checkpoint: str = "Final") -> dict[str, Path]:
    """The newest candidate checkpoint per model under `root` (see `_is_candidate`)."""
    found = _scan_dir(root, checkpoint)
    out = {}
    for model in models:
        if not found.get(model):
            raise _missing(model, root, checkpoint)
        out[model] = max(found[model], key=lambda p: p.stat().st_mtime_ns)
    return out


def resolve_weights(source: Path | str, models: Sequence[str], checkpoint: str = "Final") -> dict[str, Path]:
    """Checkpoint path per model from a folder (runs/, weights/) or a JSON manifest; errors name the gap."""
    source = Path(source)
    if source.is_file() and source.suffix == ".json":
        paths = _from_manifest(source, models)
    elif source.is_dir():
        paths = _from_dir(source, models, checkpoint)
    elif source.is_file():
        raise WeightsError(f"{source} is a file but not a .json manifest: give a folder of checkpoints (runs/, "
                           "weights/) or a JSON manifest model -> checkpoint")
    else:
        raise WeightsError(f"{source}: weights source not found (need a folder or a .json manifest)")
    for model, path in paths.items():
        if not path.is_file():
            raise WeightsError(f"checkpoint for {model!r} not found: {path}")
    return paths


def resolve_all_weights(source: Path | str, models: Sequence[str], checkpoint: str = "Final") -> list[tuple[str, Path]]:
    """Every candidate checkpoint per model under a folder (a study: one per seed), in model then path order."""
    source = Path(source)
    if not source.is_dir():
        raise WeightsError(f"{source}: --all-seeds needs a folder (a study or a weights folder)")
    found = _scan_dir(source, checkpoint)
    out = []
    for model in models:
        if not found.get(model):
            raise _missing(model, source, checkpoint)
        out += [(model, p) for p in sorted(found[model])]
    return out


def add_data_and_weights_args(parser: argparse.ArgumentParser) -> None:
    """--data and --weights-dir, as every CLI that runs the compared models over val images reads them."""
    parser.add_argument("--data", type=input_dir, default=DEFAULT_DATA,
                        help=f"dataset root (val/wider_val.txt, ground_truth/; default {DEFAULT_DATA})")
    parser.add_argument("--weights-dir", type=input_path, default=DEFAULT_RUNS,
                        help="folder searched for Final.pth / <model>.pth (default runs/, where training writes "
                             "runs/<run-name>/weights/Final.pth), or a JSON manifest model -> checkpoint")


def _training_info(path: Path, ckpt: dict[str, Any]) -> tuple[int | None, int | None]:
    """(epochs, seed) from the checkpoint ("epochs"|"epoch", "seed"|args.seed), else run.json (max_epoch, seed).

    The trainer counts epochs from 1 and stores the number of completed epochs as "epoch".
    """
    args = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
    epochs = ckpt.get("epochs", ckpt.get("epoch"))
    seed = ckpt.get("seed", args.get("seed"))
    for run_json in (path.parent / RUN_JSON, path.parent.parent / RUN_JSON):
        if run_json.is_file():
            try:
                run = json.loads(run_json.read_text(encoding="utf-8"))
            except ValueError:
                break
            epochs = epochs if isinstance(epochs, int) else run.get("max_epoch")
            seed = seed if isinstance(seed, int) else run.get("seed")
            break
    return (epochs if isinstance(epochs, int) else None), (seed if isinstance(seed, int) else None)


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
    (eval.latency), every run kept in latency_runs.csv beside latency_benchmark.csv.
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
