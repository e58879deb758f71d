"""Run a detector over the WIDERFace val list and write (or return) the submission predictions.

`predict_split` returns predictions in memory (the training loop calls it for val AP at reduced
size); `predict_to_dir` writes the standard `<out>/<event>/<image>.txt` layout, one atomic file per
image, and resumes by skipping images already written. A hidden `.predict.json` in the output
folder records what produced the files, so a resume never mixes two models or two settings.

``batch_size`` > 1 (PyTorch backend) predicts images of equal input size together (sizes read from
the file headers, so no padding changes any output), from pinned memory on CUDA; each image's
detections are those of batch 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from tqdm import tqdm

from core.boxes.postprocess import NMS_METHODS, Detections, NmsMethod
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import MODEL_CONFIGS, TEST_KEEP_TOP_K, TEST_TOP_K
from core.data.widerface import LabelFormatError, read_image_list
from core.detector import FeatherFace
from core.device import select_device
from core.io.cli_paths import CliParser, fail, input_dir, input_file, output_dir, read_problem
from core.io.hashing import file_sha256
from core.lab.artifacts import DEFAULT_DATA, atomic_write_json
from eval.deploy.backends import forward_for
from eval.deploy.bn_fold import prepare_for_inference
from eval.deploy.onnx_export import OnnxExportError
from eval.deploy.onnx_runtime import BACKENDS, backend_missing, check_backend
from eval.widerface.submission import META_FILE, Predictions, write_predictions


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
    nms_thresh: float = 0.4, *, top_k: int = TEST_TOP_K, keep_top_k: int = TEST_KEEP_TOP_K,
    nms_method: NmsMethod = "pixel", backend: str = "torch",
) -> np.ndarray:
    """(N, 5) float64 rows `x y w h score` in original-image pixels, sorted by score descending.

    With `max_side`, an image whose long side exceeds it is downscaled first (never upscaled) and
    the boxes are mapped back, so the output is always in the coordinates of the file on disk.
    `top_k` / `keep_top_k` (0 = no cap) and `nms_method` as in `core.boxes.postprocess.postprocess`;
    `backend` picks the forward pass (`FeatherFace.detect`): "torch" or "onnxruntime".
    """
    rgb, scale = _downscale(rgb, max_side)
    dets = model.detect(rgb, conf_thresh=conf_thresh, nms_thresh=nms_thresh, top_k=top_k, keep_top_k=keep_top_k,
                        nms_method=nms_method, forward=forward_for(model, backend))
    return _rows(dets, scale)


def input_hw(hw: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The (h, w) an image of size ``hw`` is fed at: downscaled to ``max_side`` if larger, never upscaled."""
    if max_side is None or max(hw) <= max_side:
        return hw
    scale = max_side / max(hw)
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def _downscale(rgb: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    h, w = input_hw(rgb.shape[:2], max_side)
    if (h, w) == rgb.shape[:2]:
        return rgb, 1.0
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), max_side / max(rgb.shape[:2])


def _rows(dets: Detections, scale: float) -> np.ndarray:
    boxes = dets.boxes.astype(np.float64) / scale
    rows = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], dets.scores.astype(np.float64)])
    rows = rows[np.isfinite(rows).all(axis=1)]
    rows[:, 2:4] = np.maximum(rows[:, 2:4], 0.0)
    return rows[np.argsort(-rows[:, 4], kind="stable")]


@torch.inference_mode()
def detect_batch(
    model: FeatherFace, rgbs: Sequence[np.ndarray], conf_thresh: float = 0.02, nms_thresh: float = 0.4, *,
    top_k: int = TEST_TOP_K, keep_top_k: int = TEST_KEEP_TOP_K, nms_method: NmsMethod = "pixel",
) -> list[Detections]:
    """`FeatherFace.detect` for equal-size RGB images in one forward pass (eval-mode model)."""
    return model.predictor(conf_thresh, nms_thresh, top_k=top_k, keep_top_k=keep_top_k,
                           nms_method=nms_method).batch(rgbs)


def header_hw(path: Path) -> tuple[int, int] | None:
    """(h, w) as `read_rgb` will decode it (EXIF rotation applied), from the header only; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees, as cv2.imread applies
                w, h = h, w
    except (OSError, ValueError):
        return None
    return h, w


def size_groups(paths: Sequence[Path], max_side: int | None, batch_size: int) -> Iterator[list[int]]:
    """Indices of images to predict together: equal input size, at most ``batch_size``; every index once."""
    if batch_size <= 1:
        yield from ([i] for i in range(len(paths)))
        return
    groups: dict[object, list[int]] = {}
    for i, path in enumerate(paths):
        hw = header_hw(path)
        groups.setdefault(input_hw(hw, max_side) if hw else ("alone", i), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            yield members[start:start + batch_size]


def predict_paths(
    model: FeatherFace, paths: Sequence[Path], max_side: int | None, conf_thresh: float, nms_thresh: float,
    batch_size: int = 1, *, top_k: int = TEST_TOP_K, keep_top_k: int = TEST_KEEP_TOP_K, nms_method: NmsMethod = "pixel",
    backend: str = "torch",
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, rows) for every path, as `predict_image` gives them, batching equal sizes (see `size_groups`)."""
    if batch_size > 1 and backend != "torch":
        raise PredictError(f"batch size {batch_size} needs the torch backend (the {backend} one predicts one image "
                           "at a time)")
    post = {"top_k": top_k, "keep_top_k": keep_top_k, "nms_method": nms_method}
    forward = forward_for(model, backend)
    for group in size_groups(paths, max_side, batch_size):
        images = [_downscale(read_rgb(paths[i]), max_side) for i in group]
        if len(group) > 1 and len({rgb.shape for rgb, _ in images}) == 1:
            dets = detect_batch(model, [rgb for rgb, _ in images], conf_thresh, nms_thresh, **post)
            yield from ((i, _rows(d, scale)) for i, d, (_, scale) in zip(group, dets, images, strict=True))
        else:  # batch 1, or a header that did not tell the decoded size
            for i, (rgb, scale) in zip(group, images, strict=True):
                det = model.detect(rgb, conf_thresh=conf_thresh, nms_thresh=nms_thresh, forward=forward, **post)
                yield i, _rows(det, scale)


def predict_split(
    model: torch.nn.Module,
    data_root: Path | str,
    max_side: int | None = None,
    conf_thresh: float = 0.02,
    nms_thresh: float = 0.4,
    limit: int | None = None,
    progress: bool = False,
    *,
    top_k: int = TEST_TOP_K,
    keep_top_k: int = TEST_KEEP_TOP_K,
    nms_method: NmsMethod = "pixel",
    backend: str = "torch",
    batch_size: int = 1,
) -> Predictions:
    """In-memory predictions for the val list: event -> image name (no .jpg) -> (N, 5) rows.

    Uses a BN-folded copy of `model` on its current device; `limit` keeps the first N images.
    """
    entries = list_val_images(data_root)[:limit]
    fast = inference_copy(model)
    paths = [Path(data_root) / "val" / "images" / event / image for event, image in entries]
    found: dict[int, np.ndarray] = {}
    with tqdm(total=len(entries), desc="predict", disable=not progress, unit="img") as bar:
        for i, rows in predict_paths(fast, paths, max_side, conf_thresh, nms_thresh, batch_size, top_k=top_k,
                                     keep_top_k=keep_top_k, nms_method=nms_method, backend=backend):
            found[i] = rows
            bar.update()
    out: Predictions = {}
    for i, (event, image) in enumerate(entries):
        out.setdefault(event, {})[Path(image).stem] = found[i]
    return out


def _check_meta(out_dir: Path, meta: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume into a folder written by another model/weights/settings (unless overwrite)."""
    meta_path = out_dir / META_FILE
    if meta_path.is_file() and not overwrite:
        try:
            old = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise PredictError(f"{meta_path}: unreadable ({read_problem(exc)}); delete it or pass overwrite") from None
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
    top_k: int = TEST_TOP_K,
    keep_top_k: int = TEST_KEEP_TOP_K,
    nms_method: NmsMethod = "pixel",
    backend: str = "torch",
    batch_size: int = 1,
) -> PredictSummary:
    """Write `<out>/<event>/<image>.txt` for every listed image, skipping files already present.

    `meta` identifies the producer (network, weights hash, ...); thresholds and size are added. A
    folder made by another producer or settings raises `PredictError`, or with `on_change="restart"`
    is rewritten from scratch; `overwrite` always rewrites every file. `on_image(done, total)` is
    called after each image written. `batch_size`: see the module docstring (not part of the settings,
    since it does not change the files).
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
    todo = [(event, image) for event, image in entries
            if overwrite or not (out_dir / event / f"{Path(image).stem}.txt").is_file()]
    skipped = len(entries) - len(todo)
    paths = [data_root / "val" / "images" / event / image for event, image in todo]
    written = 0
    if on_image is not None and skipped:
        on_image(skipped, len(entries))
    with tqdm(total=len(entries), initial=skipped, desc="predict", disable=not progress, unit="img") as bar:
        for i, rows in predict_paths(fast, paths, max_side, conf_thresh, nms_thresh, batch_size, top_k=top_k,
                                     keep_top_k=keep_top_k, nms_method=nms_method, backend=backend):
            event, image = todo[i]
            write_predictions(out_dir, {event: {Path(image).stem: rows}})
            written += 1
            bar.update()
            if on_image is not None:
                on_image(skipped + written, len(entries))
    return PredictSummary(written=written, skipped=skipped, total=len(entries), out_dir=out_dir)


def load_for_eval(network: str | None, weights: Path | str, device: str | torch.device | None = "auto") -> FeatherFace:
    """Load a checkpoint of `network` (None: whichever it holds) onto the chosen device; another variant raises
    CheckpointError."""
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
    parser.add_argument("--top-k", type=non_negative_int, default=TEST_TOP_K,
                        help=f"best boxes sent to NMS (default {TEST_TOP_K} as FeatherFace; 0 = no cap as RetinaFace)")
    parser.add_argument("--keep-top-k", type=non_negative_int, default=TEST_KEEP_TOP_K,
                        help=f"boxes kept after NMS (default {TEST_KEEP_TOP_K} as FeatherFace; 0 = no cap as "
                             "RetinaFace)")


def postprocess_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"top_k": args.top_k, "keep_top_k": args.keep_top_k, "nms_method": args.nms}


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.predict",
                       description="Write WIDERFace submission files for the val list.")
    parser.add_argument("--network", default=None, choices=list(MODEL_CONFIGS),
                        help="the variant the checkpoint must hold (default: the one it names)")
    parser.add_argument("--trained-model", required=True, type=input_file, help="checkpoint (.pth), e.g. "
                        "runs/<run-name>/weights/Final.pth")
    parser.add_argument("--data", type=input_dir, default=DEFAULT_DATA,
                        help=f"dataset root holding val/wider_val.txt (default {DEFAULT_DATA})")
    parser.add_argument("--out", required=True, type=output_dir, help="output folder: <out>/<event>/<image>.txt")
    parser.add_argument("--resize-long", type=int, default=None, metavar="N",
                        help="downscale images whose long side exceeds N px (default: original size)")
    add_postprocess_args(parser)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="rewrite every file instead of resuming")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="forward pass in PyTorch (default), ONNX Runtime or OpenVINO (CPU, converted in memory)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="predict up to N images of equal size together (torch backend; worth it on a GPU; "
                             "outputs as batch 1; default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and ONNX Runtime, fixed for the run (default: torch's choice)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_checked(argv)
    if problem := backend_missing(args.backend):  # before any model is built or file written
        parser.error(problem)
    try:
        device = select_device(args.device)
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.batch_size > 1 and args.backend != "torch":
            raise ValueError(f"--batch-size {args.batch_size} needs --backend torch")
    except (RuntimeError, ValueError) as exc:
        return fail(exc)
    try:
        model = load_for_eval(args.network, args.trained_model, device)
        meta = {"network": model.name, "weights_sha256": file_sha256(args.trained_model)}
        summary = predict_to_dir(model, args.data, args.out, args.resize_long, args.conf, args.nms_thresh, meta=meta,
                                 overwrite=args.overwrite, backend=args.backend, batch_size=args.batch_size,
                                 **postprocess_kwargs(args))
    except (CheckpointError, PredictError, KeyError, OnnxExportError) as exc:
        return fail(exc)
    print(f"{summary.written} written, {summary.skipped} already present, {summary.total} images -> {summary.out_dir} "
          f"({args.backend}, {torch.get_num_threads()} threads)")
    return 0
