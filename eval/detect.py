"""Detect faces on your own photos with any checkpoint the app accepts.

    .venv/bin/python -m eval.detect --weights W (--image F [F ...] | --images DIR) [--out detections]

For each photo it writes `<out>/<name>.jpg` with the boxes, scores and five landmarks drawn, and with
`--masks` the attention overlays of every level (stage1-3, P3-P5; spatial and hybrid mask) under
`<out>/masks/<name>/`, drawn as the dashboard's Heatmaps page draws them. All detections go to one
`<out>/detections.json` and `<out>/detections.csv`, which name the model, the weights file, where the
weights come from and the dataset they were trained on. Every write is atomic.

A file that cannot be used (not found, not an image, corrupt, truncated, over the size limits, a
decompression bomb) is skipped and named on stderr with the reason, and listed under "skipped" in
the JSON; the other photos go on. Exit code 0 when every photo was processed, 1 when some were
skipped, 2 when nothing could start (unusable weights, no input files, bad arguments).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from core.boxes.postprocess import Detections
from core.checkpoint import CheckpointError
from core.detector import LEVELS, STAGES, FeatherFace, Heatmaps
from core.device import select_device
from core.io.atomic import atomic_write_bytes
from core.io.cli_paths import CliParser, fail, input_dir, input_file, output_dir, read_problem
from core.io.hashing import file_sha256
from core.io.image_input import ImageInputError
from core.io.image_io import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, decode_upload
from core.lab.artifacts import atomic_write_json, dataset_label
from eval.attention.drawing import draw_detections, fit_image, level_masks, scale_detections
from eval.attention.overlay import overlay_mask
from eval.deploy.backends import forward_for
from eval.deploy.bn_fold import prepare_for_inference
from eval.deploy.onnx_export import OnnxExportError
from eval.deploy.onnx_runtime import BACKENDS, backend_missing
from eval.runs.checkpoints import load_checkpoint_file
from eval.runs.results_csv import atomic_write_csv

DEFAULT_OUT = Path("detections")
JSON_NAME, CSV_NAME, MASKS_DIR = "detections.json", "detections.csv", "masks"
OVERLAY_SIDE = 720  # the Heatmaps page draws its overlays at this size at most
MASK_KINDS: tuple[str, ...] = ("spatial", "hybrid")
JPEG_QUALITY = 92
# RetinaFace's landmark order: the two eyes, the nose tip, the two mouth corners.
LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"lm{i}_{axis}" for i in range(1, 6) for axis in ("x", "y"))
CSV_COLUMNS: tuple[str, ...] = ("image", "face", "score", "x1", "y1", "x2", "y2", *LANDMARK_COLUMNS, "model",
                                "weights", "trained_on")


class DetectError(ValueError):
    """Nothing can be detected (no input files, unusable arguments); the message says why."""


@dataclass
class DetectReport:
    """What one `detect_files` call did: one entry per processed photo, one per skipped file."""

    images: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def collect_inputs(images: Sequence[Path] | None, folder: Path | None, out: Path) -> list[Path]:
    """The files to process: the `--image` paths as given, or every file under `--images DIR` (sorted,
    recursive, hidden files and anything already under `out` left out). Non-image files are kept so
    that they are reported as skipped, not ignored silently."""
    if images:
        return list(images)
    if folder is None:
        raise DetectError("give --image FILE ... or --images DIR")
    if not folder.is_dir():
        raise DetectError(f"--images {folder}: not a folder")
    out_real = out.resolve()
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.resolve().is_relative_to(out_real):
            continue
        found.append(path)
    if not found:
        raise DetectError(f"--images {folder}: no files in it")
    return found


def read_photo(path: Path, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """RGB uint8 of a photo on disk, under the dashboard's upload rules (`core.io.image_io.decode_upload`);
    the byte limit is checked from the file size, before anything is read."""
    if not path.exists():
        raise ImageInputError(f"{path.name}: file not found")
    if not path.is_file():
        raise ImageInputError(f"{path.name}: not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageInputError(f"{path.name}: {size / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    return decode_upload(data, path.name, max_bytes=max_bytes, max_pixels=max_pixels)


def output_names(paths: Sequence[Path], folder: Path | None) -> list[str]:
    """A distinct output name per input: its path under `folder` (or its file name) without the suffix;
    two inputs that would collide (a.jpg and a.png) keep their extension in the name."""
    stems = [(p.relative_to(folder) if folder is not None else Path(p.name)).with_suffix("") for p in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.as_posix()] = counts.get(stem.as_posix(), 0) + 1
    names, used = [], set()
    for path, stem in zip(paths, stems, strict=True):
        name = stem.as_posix()
        if counts[name] > 1:
            name = f"{name}_{path.suffix.lstrip('.').lower() or 'noext'}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def detect_one(
    model: FeatherFace, rgb: np.ndarray, conf: float, nms_thresh: float, resize_long: int | None = None,
    backend: str = "torch", masks: bool = False, fast: FeatherFace | None = None,
) -> tuple[Detections, Heatmaps | None]:
    """Detections in the photo's own pixels (the forward pass may run on a copy shrunk to `resize_long`),
    and with `masks` the attention masks of that same pass (always the PyTorch forward: a runtime has no
    hooks; another backend then gives the detections and PyTorch the masks). `fast`: the model's
    inference copy (`prepare_for_inference`), the PyTorch forward when no masks are asked for."""
    small, scale = fit_image(rgb, resize_long) if resize_long else (rgb, 1.0)
    if masks and backend == "torch":
        dets, heatmaps = model.inspect(small, conf, nms_thresh, with_masks=True)
    else:
        forward = fast if backend == "torch" else forward_for(model, backend)
        dets = model.detect(small, conf, nms_thresh, forward=forward)
        heatmaps = model.get_attention_heatmaps(small) if masks else None
    return (scale_detections(dets, 1.0 / scale) if scale != 1.0 else dets), heatmaps


def mask_overlays(rgb: np.ndarray, heatmaps: Heatmaps) -> dict[str, np.ndarray]:
    """`<level>_<kind>` -> the mask blended on the photo (jet, opacity 0.5, stretched to its own range),
    at most OVERLAY_SIDE px: the Heatmaps page's defaults."""
    view, _ = fit_image(rgb, OVERLAY_SIDE)
    out = {}
    for level in (*STAGES, *LEVELS):
        masks = level_masks(heatmaps, level)
        for kind in MASK_KINDS:
            out[f"{level}_{kind}"] = overlay_mask(view, masks[kind], alpha=0.5, colormap="jet", normalize=True)
    return out


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    atomic_write_bytes(path, buf.tobytes())


def faces_json(dets: Detections) -> list[dict[str, Any]]:
    return [{"score": round(float(s), 5), "box": [round(float(v), 2) for v in b],
             "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(lm).reshape(5, 2)]}
            for b, s, lm in zip(dets.boxes, dets.scores, dets.landmarks, strict=True)]


def detect_files(
    model: FeatherFace, paths: Sequence[Path], names: Sequence[str], out: Path, conf: float = 0.5,
    nms_thresh: float = 0.4, resize_long: int | None = None, backend: str = "torch", masks: bool = False,
    progress: bool = True,
) -> DetectReport:
    """Detect, draw and (with `masks`) overlay every photo; a file that fails is skipped and named on stderr."""
    report = DetectReport()
    fast = prepare_for_inference(model) if backend == "torch" and not masks else None
    for path, name in tqdm(list(zip(paths, names, strict=True)), desc="photos", unit="photo", disable=not progress):
        try:
            rgb = read_photo(path)
            dets, heatmaps = detect_one(model, rgb, conf, nms_thresh, resize_long, backend, masks, fast)
            drawn = out / f"{name}.jpg"
            write_jpeg(drawn, draw_detections(rgb, dets, max_boxes=len(dets)))
            mask_files = []
            for key, overlay in (mask_overlays(rgb, heatmaps) if heatmaps is not None else {}).items():
                mask_files.append(out / MASKS_DIR / name / f"{key}.jpg")
                write_jpeg(mask_files[-1], overlay)
        except ImageInputError as exc:
            _skip(report, path, str(exc).removeprefix(f"{path.name}: "))
            continue
        except (RuntimeError, ValueError, OSError, MemoryError) as exc:  # one bad photo must not stop the rest
            _skip(report, path, read_problem(exc))
            continue
        report.images.append({"image": path.as_posix(), "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                              "output": drawn.as_posix(), "masks": [p.as_posix() for p in mask_files],
                              "faces": faces_json(dets)})
    return report


def _skip(report: DetectReport, path: Path, reason: str) -> None:
    report.skipped.append({"image": path.as_posix(), "reason": reason})
    tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)


def csv_frame(report: DetectReport, header: dict[str, Any]) -> pd.DataFrame:
    """One row per face: image, face index, score, box, landmarks, and the weights that found it."""
    rows = []
    for image in report.images:
        for i, face in enumerate(image["faces"]):
            lms = [v for point in face["landmarks"] for v in point]
            rows.append({"image": image["image"], "face": i, "score": face["score"],
                         **dict(zip(("x1", "y1", "x2", "y2"), face["box"], strict=True)),
                         **dict(zip(LANDMARK_COLUMNS, lms, strict=True)), "model": header["model"],
                         "weights": header["weights"], "trained_on": header["trained_on"]})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def build_parser() -> CliParser:
    p = CliParser(prog="python -m eval.detect", description=__doc__.split("\n\n")[0],
                  epilog="example: .venv/bin/python -m eval.detect --weights runs/par_s0/weights/"
                         "Final.pth --images assets/samples --out detections")
    p.add_argument("--weights", required=True, type=input_file,
                   help="a checkpoint the app accepts: a training run's weights/Final.pth, the shipped demo weights, "
                        "or a converted reference file (eval.deploy.import_retinaface)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", nargs="+", type=input_file, metavar="FILE", help="one or more photos")
    src.add_argument("--images", type=input_dir, metavar="DIR", help="every file under this folder (recursive)")
    p.add_argument("--out", type=output_dir, default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT}/)")
    p.add_argument("--conf", type=float, default=0.5, help="keep detections scoring at least this (default 0.5)")
    p.add_argument("--nms-thresh", type=float, default=0.4, help="NMS IoU threshold (default 0.4)")
    p.add_argument("--resize-long", type=int, default=None, metavar="N",
                   help="run the model on a copy whose long side is at most N px (default: original size); "
                        "boxes are reported in the photo's own pixels")
    p.add_argument("--masks", action="store_true",
                   help="also write the attention overlays per level (models with attention blocks only)")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="forward pass in PyTorch (default), ONNX Runtime or OpenVINO (CPU)")
    p.add_argument("--format", choices=("json", "csv", "both"), default="both", help="detections file(s) to write")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (other backends run on the CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := backend_missing(args.backend):  # before any model is built or file written
        parser.error(problem)
    if not 0.0 <= args.conf <= 1.0:
        parser.error(f"--conf must be in [0, 1], got {args.conf}")
    if args.resize_long is not None and args.resize_long < 32:
        parser.error(f"--resize-long must be at least 32 px, got {args.resize_long}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        device = "cpu" if args.backend != "torch" else str(select_device(args.device))
        paths = collect_inputs(args.image, args.images, args.out)
        model, info, origin = load_checkpoint_file(args.weights, device=device)
    except (DetectError, CheckpointError, RuntimeError) as exc:
        return fail(exc)
    header = {"model": info.model, "display_name": model.cfg.display_name, "weights": args.weights.as_posix(),
              "weights_sha256": file_sha256(args.weights), "origin": origin, "trained_on": info.dataset,
              "trained_on_label": dataset_label(info.dataset), "epochs": info.epochs,
              "settings": {"conf": args.conf, "nms_thresh": args.nms_thresh, "resize_long": args.resize_long,
                           "backend": args.backend, "device": device},
              "created": datetime.now().isoformat(timespec="seconds")}
    masks = args.masks and model.has_attention
    if args.masks and not masks:
        header["masks"] = (f"none: {info.model} has no attention blocks, so there is no channel, spatial or hybrid "
                           "mask to draw")
        print(f"note: --masks: {header['masks']}; writing detections only", file=sys.stderr)
    elif masks:
        header["masks"] = "spatial and hybrid mask per level, from the PyTorch forward pass"
    print(f"{info.model} from {args.weights} ({origin}); {len(paths)} file(s) -> {args.out}", file=sys.stderr)
    try:
        report = detect_files(model, paths, output_names(paths, args.images), args.out, args.conf,
                              args.nms_thresh, args.resize_long, args.backend, masks, progress=not args.no_progress)
    except OnnxExportError as exc:
        print(f"error: --backend {args.backend}: {exc}", file=sys.stderr)
        return 2
    written = []
    if args.format in ("json", "both"):
        atomic_write_json(args.out / JSON_NAME, {**header, "images": report.images, "skipped": report.skipped})
        written.append(args.out / JSON_NAME)
    if args.format in ("csv", "both"):
        atomic_write_csv(csv_frame(report, header), args.out / CSV_NAME)
        written.append(args.out / CSV_NAME)
    faces = sum(len(i["faces"]) for i in report.images)
    print(f"{len(report.images)} photo(s), {faces} face(s) at score >= {args.conf:g}, {len(report.skipped)} "
          f"skipped -> {', '.join(p.as_posix() for p in written)}")
    return 1 if report.skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
