"""Where two models differ: per val image, the faces one model finds and the other misses.

At a chosen detection score threshold, a model *finds* a face when, under the WIDER FACE protocol
(``eval.widerface.protocol.match_predictions``: best-IoU face, IoU >= 0.5, first prediction in score order
recalls it), one of its detections at or above the threshold recalls that face. Only the faces of
the chosen setting (easy / medium / hard keep list) count; a detection matching another face is
ignored, anything else above the threshold is a false positive. Per image:
``only_a`` / ``only_b`` (faces found by one model only), false positives of each, and
``difference = only_a + only_b + |fp_a - fp_b|``, the ranking key.

The Results page lists the images with the largest difference and draws one side by side (ground
truth, both models' detections, their masks). Predictions come from the folders ``eval.results``
records in its JSON, or from an in-memory run of the models over the val images when those
folders are absent but the images are present; ``what_is_missing`` says plainly what is not there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from core.data.wider_gt import SETTINGS, GTImage, WiderGT
from core.lab.roots import is_within
from dashboard.logic.weights import WeightsOption
from eval.attention.overlay import overlay_mask
from eval.widerface.protocol import counted_subsets, match_predictions
from eval.widerface.submission import Predictions

if TYPE_CHECKING:  # torch is imported only where a model runs: the Results page lists differences without it
    from core.detector import FeatherFace

COLUMNS: tuple[str, ...] = ("event", "image", "faces", "found_a", "found_b", "only_a", "only_b", "fp_a", "fp_b",
                            "difference")
GT_COLOR = (255, 215, 0)  # counted faces: gold
IGNORED_COLOR = (150, 150, 150)  # faces outside the setting, and detections matching them
TP_COLOR = (0, 200, 0)
FP_COLOR = (230, 0, 0)


def _setting_mask(gt: WiderGT, setting: str) -> np.ndarray:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    return next(mask for group, label, mask in counted_subsets(gt) if group == "setting" and label == setting)


def _found(pred: Predictions, gt: WiderGT, counted: np.ndarray, score_thresh: float,
           iou_thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces recalled: bool per face, false positives per image, true-positive flags per detection)."""
    m = match_predictions(pred, gt, iou_thresh)
    proposal, tp = m.flags(counted)
    keep = m.score >= score_thresh
    recalled = np.zeros(len(counted), dtype=bool)
    recalled[m.face[tp & keep]] = True
    fp = np.bincount(m.image[keep & proposal & ~tp], minlength=len(gt))
    return recalled, fp, tp


def image_differences(
    pred_a: Predictions, pred_b: Predictions, gt: WiderGT, score_thresh: float = 0.5, setting: str = "hard",
    iou_thresh: float = 0.5,
) -> pd.DataFrame:
    """One row per ground-truth image (COLUMNS), largest difference first (ties: by event, image)."""
    counted = _setting_mask(gt, setting)
    found_a, fp_a, _ = _found(pred_a, gt, counted, score_thresh, iou_thresh)
    found_b, fp_b, _ = _found(pred_b, gt, counted, score_thresh, iou_thresh)
    owner = np.repeat(np.arange(len(gt)), [im.num_faces for im in gt.images])

    def per_image(flags: np.ndarray) -> np.ndarray:
        return np.bincount(owner[flags], minlength=len(gt))

    frame = pd.DataFrame({
        "event": [im.event for im in gt.images], "image": [im.name for im in gt.images],
        "faces": per_image(counted), "found_a": per_image(found_a), "found_b": per_image(found_b),
        "only_a": per_image(found_a & ~found_b), "only_b": per_image(found_b & ~found_a),
        "fp_a": fp_a, "fp_b": fp_b,
    })
    frame["difference"] = frame["only_a"] + frame["only_b"] + (frame["fp_a"] - frame["fp_b"]).abs()
    order = np.lexsort((frame["image"], frame["event"], -frame["difference"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)[list(COLUMNS)]


@dataclass(frozen=True)
class PanelBoxes:
    """What one panel draws: counted / ignored GT faces and detections split by outcome (x y w h)."""

    counted: np.ndarray
    ignored: np.ndarray
    true_positive: np.ndarray
    ignored_match: np.ndarray
    false_positive: np.ndarray


def panel_boxes(im: GTImage, boxes: np.ndarray, score_thresh: float, setting: str = "hard",
                iou_thresh: float = 0.5) -> PanelBoxes:
    """Classify one image's detections at the threshold with the same matching as `image_differences`."""
    gt = WiderGT((im,))
    counted = _setting_mask(gt, setting)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    empty = np.zeros((0, 4))
    if not im.num_faces:
        kept = boxes[boxes[:, 4] >= score_thresh, :4]
        return PanelBoxes(empty, empty, empty, empty, kept)
    m = match_predictions({im.event: {im.name: boxes}}, gt, iou_thresh)
    proposal, tp = m.flags(counted)
    keep = m.score >= score_thresh
    order = np.argsort(-boxes[:, 4], kind="stable")  # match_predictions' order within an image
    sorted_boxes = boxes[order, :4]
    return PanelBoxes(
        counted=im.boxes[counted], ignored=im.boxes[~counted], true_positive=sorted_boxes[keep & tp],
        ignored_match=sorted_boxes[keep & ~proposal], false_positive=sorted_boxes[keep & proposal & ~tp],
    )


def _rect(out: np.ndarray, xywh: Iterable[np.ndarray], color: tuple[int, int, int], thick: int) -> None:
    for x, y, w, h in xywh:
        cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), color, thick)


def draw_panel(rgb: np.ndarray, parts: PanelBoxes, mask: np.ndarray | None = None, alpha: float = 0.45) -> np.ndarray:
    """The image (mask blended on, if given), GT faces gold (counted) or grey (outside the setting), detections
    green (finds a face), red (false positive) or grey (matches an ignored face)."""
    out = overlay_mask(rgb, mask, alpha=alpha) if mask is not None else np.ascontiguousarray(rgb.copy())
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    # Detections wide first, ground truth thin on top: where a hit hugs its face both colours stay visible.
    _rect(out, parts.ignored_match, IGNORED_COLOR, thick + 2)
    _rect(out, parts.false_positive, FP_COLOR, thick + 2)
    _rect(out, parts.true_positive, TP_COLOR, thick + 2)
    _rect(out, parts.ignored, IGNORED_COLOR, thick)
    _rect(out, parts.counted, GT_COLOR, thick)
    return out


def prediction_folder(payload: Mapping[str, Any], base: Path, roots: Iterable[Path]) -> tuple[Path | None, str]:
    """The predictions folder an eval.results JSON names, if it exists inside an allowed root; else why not."""
    named = (payload.get("predict") or {}).get("predictions") if isinstance(payload.get("predict"), Mapping) else None
    if not named:
        return None, "its evaluation file names no predictions folder"
    path = Path(named) if Path(named).is_absolute() else base / named
    if not path.is_dir():
        return None, f"predictions folder `{named}` is absent (not shipped: it is reproducible from the weights)"
    if not is_within(path, roots):
        return None, f"predictions folder `{named}` lies outside the dashboard's folders"
    return path, ""


def data_root(payload: Mapping[str, Any], base: Path, roots: Iterable[Path]) -> tuple[Path | None, str]:
    """The dataset root (val images + ground truth) an evaluation names, if present and allowed; else why not."""
    named = payload.get("dataset_path")
    if not named:
        return None, "its evaluation file names no dataset folder"
    path = Path(named) if Path(named).is_absolute() else base / named
    if not (path / "ground_truth").is_dir() or not (path / "val" / "images").is_dir():
        return None, f"val images and ground truth are absent (`{named}/val/images`, `{named}/ground_truth`)"
    if not is_within(path, [base, *roots]):
        return None, f"dataset folder `{named}` lies outside the repository and the dashboard's folders"
    return path, ""


def record_weights(payload: Mapping[str, Any], base: Path, roots: Iterable[Path]) -> tuple[Path | None, str]:
    """The checkpoint an evaluation was made with, if present inside the weights roots; else why not (the masks
    of the side-by-side view must come from the weights that made the predictions)."""
    named = payload.get("weights")
    if not named:
        return None, "its evaluation file names no weights"
    path = Path(named) if Path(named).is_absolute() else base / named
    if not path.is_file():
        return None, f"weights `{named}` are absent"
    if not is_within(path, roots):
        return None, f"weights `{named}` lie outside the dashboard's weights folders"
    return path, ""


def synth_command(manifest: Mapping[str, Any] | None) -> str | None:
    """The command that regenerates a demo's synthetic set from the settings its manifest records."""
    if not manifest or manifest.get("dataset") != "synthetic" or not manifest.get("data"):
        return None
    parts = [f"python -m core.data.synth --out {manifest['data']}"]
    for key in ("num_train", "num_val", "seed"):
        if manifest.get(key) is not None:
            parts.append(f"--{key.replace('_', '-')} {manifest[key]}")
    if isinstance(manifest.get("max_size"), int):  # train.demo draws sides in [min(256, max), max]
        parts.append(f"--min-size {min(256, manifest['max_size'])} --max-size {manifest['max_size']}")
    return " ".join(parts)


def what_is_missing(dataset: str, have_predictions: bool, have_images: bool, regenerate: str | None = None) -> str:
    """A plain sentence for the page: what this view needs that is not there, and how to make it."""
    if have_predictions and have_images:
        return ""
    needs = []
    if not have_images:
        if dataset == "synthetic":
            how = f"`{regenerate}` rebuilds them" if regenerate else "`python -m core.data.synth` makes a synthetic set"
        else:
            how = "WIDER FACE val images cannot be downloaded here; put them in the RetinaFace layout"
        needs.append(f"the val images and ground truth ({how})")
    if not have_predictions:
        needs.append("per-image predictions (`python -m eval.results` writes them under `<results>/predictions/`; "
                     "with the images present this page can also run both models itself)")
    return "Not available: this view needs " + " and ".join(needs) + "."


@dataclass(frozen=True)
class PairSources:
    """What the side-by-side view of two evaluations can use; None where absent, with the reasons."""

    data: Path | None
    predictions: tuple[Path | None, Path | None]
    weights: tuple[Path | None, Path | None]
    notes: tuple[str, ...]
    missing: str  # "" when images and predictions (or weights to make them) are there

    @property
    def can_predict(self) -> bool:
        """Images and both checkpoints present: the page may run the models itself."""
        return self.data is not None and all(w is not None for w in self.weights)


def resolve_pair(payload_a: Mapping[str, Any], payload_b: Mapping[str, Any], base: Path, roots: Iterable[Path],
                 weights_roots: Iterable[Path], manifest: Mapping[str, Any] | None = None) -> PairSources:
    """Predictions, images and weights for two eval.results JSONs, each checked to lie in an allowed folder."""
    roots, weights_roots = list(roots), list(weights_roots)
    if payload_a.get("dataset_path") != payload_b.get("dataset_path"):
        return PairSources(None, (None, None), (None, None), (), "Not available: the two evaluations used different "
                           f"data ({payload_a.get('dataset_path')} vs {payload_b.get('dataset_path')}); pick two "
                           "evaluations of the same val set.")
    notes = []
    data, why = data_root(payload_a, base, roots)
    if data is None:
        notes.append(why)
    preds, weights = [], []
    for side, payload in (("A", payload_a), ("B", payload_b)):
        folder, why_p = prediction_folder(payload, base, roots)
        ckpt, why_w = record_weights(payload, base, weights_roots)
        notes += [f"{side}: {w}" for w in (why_p, why_w) if w]
        preds.append(folder)
        weights.append(ckpt)
    have_preds = all(p is not None for p in preds)
    can_predict = data is not None and all(w is not None for w in weights)
    regenerate = synth_command(manifest) if manifest and manifest.get("data") == payload_a.get("dataset_path") \
        else None
    missing = "" if data is not None and (have_preds or can_predict) else what_is_missing(
        str(payload_a.get("dataset", "")), have_preds or can_predict, data is not None, regenerate)
    return PairSources(data, (preds[0], preds[1]), (weights[0], weights[1]), tuple(notes), missing)


def read_payload(path: Path) -> dict[str, Any]:
    """An eval.results JSON as a dict ({} when unreadable: the page then reports what is missing)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def checkpoint_option(payload: Mapping[str, Any], path: Path) -> WeightsOption:
    """The weights choice for an evaluation's checkpoint (the dashboard's model cache takes these)."""
    return WeightsOption(model=str(payload.get("model")), kind="checkpoint", label=f"{payload.get('weights')}",
                         path=path, dataset=payload.get("dataset"), epochs=payload.get("epochs"))


def side_mask(model: FeatherFace | None, rgb: np.ndarray, level: str) -> tuple[np.ndarray | None, str]:
    """The hybrid mask at `level` ("none": no mask) from one real forward pass, or None and why not."""
    if level == "none":
        return None, ""
    if model is None:
        return None, "weights absent: no mask"
    if not model.has_attention:
        return None, "no attention in this model"
    from eval.attention.drawing import level_masks

    return level_masks(model.get_attention_heatmaps(rgb), level)["hybrid"], ""


def predict_val(model: FeatherFace, data: Path, on_image: Callable[[int, int], None] | None = None,
                conf_thresh: float = 0.02, nms_thresh: float = 0.4) -> Predictions:
    """In-memory predictions of an inference-ready model over the val list (original size, the eval.results
    settings); `on_image(done, total)` after each image, for a progress bar."""
    from eval.widerface.predict import list_val_images, predict_image, read_rgb

    entries = list_val_images(data)
    out: Predictions = {}
    for i, (event, image) in enumerate(entries, start=1):
        rgb = read_rgb(Path(data) / "val" / "images" / event / image)
        out.setdefault(event, {})[Path(image).stem] = predict_image(model, rgb, None, conf_thresh, nms_thresh)
        if on_image is not None:
            on_image(i, len(entries))
    return out
