"""Run a detector over the WIDERFace val list and write (or return) the submission predictions.

`predict_split` returns predictions in memory (the training loop calls it for val AP at reduced
size); `predict_to_dir` writes the standard `<out>/<event>/<image>.txt` layout, one atomic file per
image, and resumes by skipping images already written. A hidden `.predict.json` in the output
folder records what produced the files, so a resume never mixes two models or two settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from tqdm import tqdm

from core.artifacts import atomic_write_json
from core.checkpoint import CheckpointError, load_checkpoint
from core.data.widerface import LabelFormatError, read_image_list
from core.detector import FeatherFace
from core.device import select_device
from core.inference import prepare_for_inference
from core.onnx_export import OnnxExportError
from core.onnx_runtime import BACKENDS, check_backend
from core.postprocess import NMS_METHODS, NmsMethod
from eval.predictions import META_FILE, Predictions, write_predictions


class PredictError(RuntimeError):
    """The data layout, an image or the output folder is unusable; the message names the path."""


@dataclass(frozen=True)
class PredictSummary:
    """What `predict_to_dir` did: files written now, files kept from an earlier run, images listed."""

    written: int
    skipped: int
    total: int
    out_dir: Path


def image_list_path(data_root: Path | str) -> Path:
    return Path(data_root) / "val" / "wider_val.txt"


def list_val_images(data_root: Path | str) -> list[tuple[str, str]]:
    """(event, image file name) pairs from `<data>/val/wider_val.txt`, with a clear error if absent."""
    list_file = image_list_path(data_root)
    if not list_file.is_file():
        raise PredictError(f"{list_file}: image list not found; expected the WIDERFace layout "
                           "<data>/val/wider_val.txt with <data>/val/images/<event>/<image>.jpg")
    try:
        return read_image_list(list_file)
    except LabelFormatError as exc:
        raise PredictError(str(exc)) from exc


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8, failing with the path (cv2 returns None silently)."""
    if not path.is_file():
        raise PredictError(f"{path}: image listed in wider_val.txt not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PredictError(f"{path}: not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def inference_copy(model: torch.nn.Module) -> FeatherFace:
    """BN-folded eval copy on the model's device; the caller's (maybe training) model is untouched."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    return prepare_for_inference(inner)


def predict_image(
    model: FeatherFace, rgb: np.ndarray, max_side: int | None = None, conf_thresh: float = 0.02,
    nms_thresh: float = 0.4, *, top_k: int = 5000, keep_top_k: int = 750, nms_method: NmsMethod = "pixel",
    backend: str = "torch",
) -> np.ndarray:
    """(N, 5) float64 rows `x y w h score` in original-image pixels, sorted by score descending.

    With `max_side`, an image whose long side exceeds it is downscaled first (never upscaled) and
    the boxes are mapped back, so the output is always in the coordinates of the file on disk.
    `top_k` / `keep_top_k` (0 = no cap) and `nms_method` as in `core.postprocess.postprocess`;
    `backend` picks the forward pass (`FeatherFace.detect`): "torch" or "onnxruntime".
    """
    scale = 1.0
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        scale = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    dets = model.detect(rgb, conf_thresh=conf_thresh, nms_thresh=nms_thresh, top_k=top_k, keep_top_k=keep_top_k,
                        nms_method=nms_method, backend=backend)
    boxes = dets.boxes.astype(np.float64) / scale
    rows = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], dets.scores.astype(np.float64)])
    rows = rows[np.isfinite(rows).all(axis=1)]
    rows[:, 2:4] = np.maximum(rows[:, 2:4], 0.0)
    return rows[np.argsort(-rows[:, 4], kind="stable")]


def predict_split(
    model: torch.nn.Module,
    data_root: Path | str,
    max_side: int | None = None,
    conf_thresh: float = 0.02,
    nms_thresh: float = 0.4,
    limit: int | None = None,
    progress: bool = False,
    *,
    top_k: int = 5000,
    keep_top_k: int = 750,
    nms_method: NmsMethod = "pixel",
    backend: str = "torch",
) -> Predictions:
    """In-memory predictions for the val list: event -> image name (no .jpg) -> (N, 5) rows.

    Uses a BN-folded copy of `model` on its current device; `limit` keeps the first N images.
    """
    entries = list_val_images(data_root)[:limit]
    fast = inference_copy(model)
    out: Predictions = {}
    for event, image in tqdm(entries, desc="predict", disable=not progress, unit="img"):
        rgb = read_rgb(Path(data_root) / "val" / "images" / event / image)
        out.setdefault(event, {})[Path(image).stem] = predict_image(
            fast, rgb, max_side, conf_thresh, nms_thresh, top_k=top_k, keep_top_k=keep_top_k, nms_method=nms_method,
            backend=backend)
    return out


def _check_meta(out_dir: Path, meta: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume into a folder written by another model/weights/settings (unless overwrite)."""
    meta_path = out_dir / META_FILE
    if meta_path.is_file() and not overwrite:
        try:
            old = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise PredictError(f"{meta_path}: unreadable ({exc}); delete it or pass overwrite") from exc
        if old != meta:
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise PredictError(f"{out_dir} holds predictions made with different {diff}; "
                               "use another --out or --overwrite")
    elif not meta_path.is_file() and not overwrite and any(out_dir.glob("*/*.txt")):
        raise PredictError(f"{out_dir} holds prediction files of unknown origin; use another --out or --overwrite")
    atomic_write_json(meta_path, meta)


def predict_to_dir(
    model: torch.nn.Module,
    data_root: Path | str,
    out_dir: Path | str,
    max_side: int | None = None,
    conf_thresh: float = 0.02,
    nms_thresh: float = 0.4,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_change: Literal["error", "restart"] = "error",
    progress: bool = True,
    on_image: Callable[[int, int], None] | None = None,
    *,
    top_k: int = 5000,
    keep_top_k: int = 750,
    nms_method: NmsMethod = "pixel",
    backend: str = "torch",
) -> PredictSummary:
    """Write `<out>/<event>/<image>.txt` for every listed image, skipping files already present.

    `meta` identifies the producer (network, weights hash, ...); thresholds and size are added. A
    folder made by another producer or settings raises `PredictError`, or with `on_change="restart"`
    is rewritten from scratch; `overwrite` always rewrites every file. `on_image(done, total)` is
    called after each image.
    """
    data_root, out_dir = Path(data_root), Path(out_dir)
    entries = list_val_images(data_root)
    settings = {"max_side": max_side, "conf_thresh": conf_thresh, "nms_thresh": nms_thresh, "top_k": top_k,
                "keep_top_k": keep_top_k, "nms": nms_method, "backend": check_backend(backend)}
    try:
        _check_meta(out_dir, {**(meta or {}), **settings}, overwrite)
    except PredictError:
        if on_change != "restart":
            raise
        overwrite = True
        _check_meta(out_dir, {**(meta or {}), **settings}, overwrite)
    fast = inference_copy(model)
    written = skipped = 0
    for i, (event, image) in enumerate(tqdm(entries, desc="predict", disable=not progress, unit="img"), start=1):
        name = Path(image).stem
        if not overwrite and (out_dir / event / f"{name}.txt").is_file():
            skipped += 1
        else:
            rgb = read_rgb(data_root / "val" / "images" / event / image)
            rows = predict_image(fast, rgb, max_side, conf_thresh, nms_thresh, top_k=top_k, keep_top_k=keep_top_k,
                                 nms_method=nms_method, backend=backend)
            write_predictions(out_dir, {event: {name: rows}})
            written += 1
        if on_image is not None:
            on_image(i, len(entries))
    return PredictSummary(written=written, skipped=skipped, total=len(entries), out_dir=out_dir)


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_for_eval(network: str, weights: Path | str, device: str | torch.device | None = "auto") -> FeatherFace:
    """Load a checkpoint of `network` onto the chosen device; another variant raises CheckpointError."""
    dev = select_device(device) if not isinstance(device, torch.device) else device
    model, _ = load_checkpoint(weights, expected_name=network, map_location=dev)
    return model.eval()


def nms_method_arg(text: str) -> str:
    """`--nms` picks the rule; a number here is an old command line meaning the IoU threshold."""
    try:
        float(text)
    except ValueError:
        if text not in NMS_METHODS:
            raise argparse.ArgumentTypeError(f"choose one of {list(NMS_METHODS)}, got {text!r}") from None
        return text
    raise argparse.ArgumentTypeError(f"--nms now picks the NMS rule {list(NMS_METHODS)}; "
                                     f"give the IoU threshold as --nms-thresh {text}")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = no cap), got {value}")
    return value


def add_postprocess_args(parser: argparse.ArgumentParser) -> None:
    """--conf, --nms-thresh, --nms, --top-k, --keep-top-k (shared with eval.results)."""
    parser.add_argument("--conf", type=float, default=0.02, help="keep scores strictly above this (default 0.02)")
    parser.add_argument("--nms-thresh", type=float, default=0.4, help="NMS IoU threshold (default 0.4)")
    parser.add_argument("--nms", type=nms_method_arg, default="pixel", metavar="{pixel,torchvision}",
                        help="pixel: RetinaFace's +1 pixel areas (default); torchvision: continuous areas")
    parser.add_argument("--top-k", type=non_negative_int, default=5000,
                        help="best boxes sent to NMS (default 5000 as FeatherFace; 0 = no cap as RetinaFace)")
    parser.add_argument("--keep-top-k", type=non_negative_int, default=750,
                        help="boxes kept after NMS (default 750 as FeatherFace; 0 = no cap as RetinaFace)")


def postprocess_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"top_k": args.top_k, "keep_top_k": args.keep_top_k, "nms_method": args.nms}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.predict",
                                     description="Write WIDERFace submission files for the val list.")
    parser.add_argument("--network", required=True, help="cbam | eca_cbam | eca_cbam_parallel | none | retinaface_mnet")
    parser.add_argument("--trained-model", required=True, type=Path, help="checkpoint (.pth) of that network")
    parser.add_argument("--data", required=True, type=Path, help="dataset root holding val/wider_val.txt")
    parser.add_argument("--out", required=True, type=Path, help="output folder: <out>/<event>/<image>.txt")
    parser.add_argument("--resize-long", type=int, default=None, metavar="N",
                        help="downscale images whose long side exceeds N px (default: original size)")
    add_postprocess_args(parser)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="rewrite every file instead of resuming")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="forward pass in PyTorch (default) or ONNX Runtime (CPU, exported in memory)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and ONNX Runtime, fixed for the run (default: torch's choice)")
    args = parser.parse_args(argv)
    try:
        device = select_device(args.device)
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_for_eval(args.network, args.trained_model, device)
        meta = {"network": args.network, "weights_sha256": file_sha256(args.trained_model)}
        summary = predict_to_dir(model, args.data, args.out, args.resize_long, args.conf, args.nms_thresh, meta=meta,
                                 overwrite=args.overwrite, backend=args.backend, **postprocess_kwargs(args))
    except (CheckpointError, PredictError, KeyError, OnnxExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary.written} written, {summary.skipped} already present, {summary.total} images -> {summary.out_dir} "
          f"({args.backend}, {torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
