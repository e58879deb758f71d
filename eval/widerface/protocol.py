"""WIDER FACE evaluation protocol, vectorised; gives the AP of RetinaFace's ``widerface_evaluate``.

Protocol (as in the RetinaFace / wondervictor ``evaluation.py``):

1. Scores are min-max normalised over every prediction given (unknown images included, as the
   script reads the whole directory). The bounds start from the script's initial values:
   ``lo = min(1, min score)``, ``hi = max(0, max score)``; for scores in [0, 1] that is plain
   min-max. If ``hi == lo`` (e.g. all scores equal) the script divides by zero and every score
   becomes NaN (AP 0); here every normalised score is 1.0 instead, so constant-score detectors
   get the AP of their single operating point. This is the one deliberate deviation.
2. Per image, predictions are sorted by score descending (stable; the script relies on the file
   order, which the submission layout requires to be sorted, so results agree). Each prediction
   takes its best-IoU ground-truth face (first face on ties), IoU with the +1 pixel convention
   (x2 = x + w, area = (x2 - x1 + 1) * (y2 - y1 + 1)). At IoU >= ``iou_thresh``: if that face is
   not in the setting's keep list the prediction is ignored (neither true nor false positive);
   otherwise the first such prediction recalls the face. Anything else is a false positive.
3. Images with no faces or no predictions add nothing to the counts, but their kept faces count
   in the recall denominator.
4. Threshold t = 0..T-1 is ``1 - (t + 1) / T``; at each one, over all images, proposals = non-
   ignored predictions with score >= threshold and tp = faces recalled by them. precision =
   tp / proposals, recall = tp / faces. Where proposals == 0 (only at the strictest thresholds)
   precision is defined as 0 (the script gets NaN there, which never reaches its AP); a subset
   with no faces gets recall 0 and AP 0 (the script: NaN).
5. AP is VOC AP: precision envelope over mrec = [0, recall, 1], mpre = [0, precision, 0].

Because a prediction counted at a threshold is counted at every lower one, per-image cumulative
sums reduce to one histogram of "first threshold reached" per prediction, so there is no loop
over thresholds or images: only one chunked pass over (prediction, face) pairs for the IoUs.

Attribute breakdown: for an attribute value, the counted faces are the hard-setting keep-list
faces having that value; all other faces are ignored (a prediction matching them is neither a
true nor a false positive). Values: occlusion 0/1/2, blur 0/1/2, pose 0/1, illumination 0/1, and
face scale by box height h: small 10 <= h < 50, medium 50 <= h <= 300, large h > 300 (px).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from core.data.wider_gt import SETTINGS, WiderGT, WiderGTError, load_wider_gt
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, fail, input_dir, output_file
from core.lab.artifacts import DEFAULT_DATA
from eval.widerface.submission import PredictionFormatError, read_predictions

BREAKDOWN_VALUES: dict[str, tuple[int, ...]] = {
    "occlusion": (0, 1, 2),
    "blur": (0, 1, 2),
    "pose": (0, 1),
    "illumination": (0, 1),
}
SCALE_BINS: tuple[str, ...] = ("small", "medium", "large")
_PAIR_CHUNK = 1 << 19  # (prediction, face) pairs per IoU block: big enough for numpy, small for cache


@dataclass(frozen=True, eq=False)
class SubsetResult:
    """AP and PR curve of one set of counted faces (a setting or an attribute value)."""

    name: str
    ap: float
    num_faces: int
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True, eq=False)
class WiderEvalResult:
    """Easy/medium/hard results, the hard-set attribute breakdown, and what was evaluated."""

    settings: dict[str, SubsetResult]
    breakdown: dict[str, dict[str, SubsetResult]]
    thresholds: np.ndarray
    iou_thresh: float
    score_range: tuple[float, float]
    num_images: int
    num_predictions: int
    num_matched_predictions: int
    num_images_without_predictions: int
    num_unknown_images: int

    @property
    def ap(self) -> dict[str, float]:
        return {name: r.ap for name, r in self.settings.items()}

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """JSON-ready summary; curves adds precision/recall lists per subset."""

        def one(r: SubsetResult) -> dict[str, Any]:
            d: dict[str, Any] = {"ap": r.ap, "num_faces": r.num_faces}
            if curves:
                d |= {"precision": r.precision.tolist(), "recall": r.recall.tolist()}
            return d

        out: dict[str, Any] = {
            "ap": self.ap,
            "settings": {k: one(r) for k, r in self.settings.items()},
            "breakdown": {a: {v: one(r) for v, r in vals.items()} for a, vals in self.breakdown.items()},
            "iou_thresh": self.iou_thresh,
            "score_range": list(self.score_range),
            "num_images": self.num_images,
            "num_predictions": self.num_predictions,
            "num_matched_predictions": self.num_matched_predictions,
            "num_images_without_predictions": self.num_images_without_predictions,
            "num_unknown_images": self.num_unknown_images,
        }
        if curves:
            out["thresholds"] = self.thresholds.tolist()
        return out

    def table(self) -> str:
        """Plain-text table for the terminal."""
        lines = [
            f"WIDER FACE: {self.num_images} images, {self.num_predictions} predictions, IoU {self.iou_thresh}",
            f"{'subset':<16}{'AP':>8}{'faces':>9}",
        ]
        lines += [f"{r.name:<16}{r.ap:>8.4f}{r.num_faces:>9}" for r in self.settings.values()]
        lines.append("hard-set breakdown (faces of other values ignored)")
        for vals in self.breakdown.values():
            lines += [f"{r.name:<16}{r.ap:>8.4f}{r.num_faces:>9}" for r in vals.values()]
        return "\n".join(lines)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC AP with the precision envelope, as in the reference script."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def thresholds(thresh_num: int) -> np.ndarray:
    """Score thresholds 1 - (t + 1) / T, t = 0..T-1 (same floats as the script's loop)."""
    return 1 - np.arange(1, thresh_num + 1) / thresh_num


def _as_pred(where: str, boxes: ArrayLike) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim != 2 or arr.shape[1] != 5 or not np.isfinite(arr).all():
        raise ValueError(f"{where}: predictions must be finite (N, 5) rows x y w h score, got shape {arr.shape}")
    return arr


def _score_range(pred: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[float, float]:
    """Normalisation bounds over all predictions, starting from the script's (min 1, max 0)."""
    lo, hi = 1.0, 0.0
    for images in pred.values():
        for boxes in images.values():
            if len(boxes):
                lo = min(lo, float(boxes[:, 4].min()))
                hi = max(hi, float(boxes[:, 4].max()))
    return lo, hi


def _normalise(scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
    diff = hi - lo
    if diff == 0:
        return np.ones_like(scores)
    return (scores - lo) / diff


@dataclass(frozen=True)
class _Faces:
    """All ground-truth faces of the set, flattened in image order."""

    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    area: np.ndarray
    start: np.ndarray  # per image: index of its first face
    count: np.ndarray  # per image: number of faces


def _faces(gt: WiderGT) -> _Faces:
    boxes = np.concatenate([im.boxes for im in gt.images]) if len(gt) else np.zeros((0, 4))
    count = np.array([im.num_faces for im in gt.images], dtype=np.int64)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    return _Faces(x1, y1, x2, y2, (x2 - x1 + 1) * (y2 - y1 + 1), np.cumsum(count) - count, count)


def _best_faces(pred: np.ndarray, image: np.ndarray, faces: _Faces) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction: max IoU over the faces of its image and the first face reaching it.

    Every prediction's image has >= 1 face. Pairs are laid out prediction-major and processed
    in chunks; IoU uses the exact float operations of the reference's bbox_overlaps.
    """
    px1, py1 = pred[:, 0], pred[:, 1]
    px2, py2 = px1 + pred[:, 2], py1 + pred[:, 3]
    parea = (px2 - px1 + 1) * (py2 - py1 + 1)
    reps = faces.count[image]
    first = faces.start[image]
    ends = np.cumsum(reps)
    best_iou = np.empty(len(pred))
    best = np.empty(len(pred), dtype=np.int64)
    lo = 0
    while lo < len(pred):
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right")))
        r = reps[lo:hi]
        seg = np.cumsum(r) - r
        local = np.arange(int(r.sum())) - np.repeat(seg, r)
        g = np.repeat(first[lo:hi], r) + local
        iw = np.minimum(np.repeat(px2[lo:hi], r), faces.x2[g]) - np.maximum(np.repeat(px1[lo:hi], r), faces.x1[g]) + 1
        ih = np.minimum(np.repeat(py2[lo:hi], r), faces.y2[g]) - np.maximum(np.repeat(py1[lo:hi], r), faces.y1[g]) + 1
        inter = iw * ih
        union = np.repeat(parea[lo:hi], r) + faces.area[g] - inter
        iou = np.zeros(len(g))
        np.divide(inter, union, out=iou, where=(iw > 0) & (ih > 0))
        top = np.maximum.reduceat(iou, seg)
        at_top = np.where(iou == np.repeat(top, r), local, len(g))
        best_iou[lo:hi] = top
        best[lo:hi] = first[lo:hi] + np.minimum.reduceat(at_top, seg)
        lo = hi
    return best_iou, best


def subset_name(group: str, label: str) -> str:
    """"easy" for a setting, "occlusion=2" / "scale=small" for a breakdown subset."""
    return label if group == "setting" else f"{group}={label}"


def counted_subsets(gt: WiderGT) -> list[tuple[str, str, np.ndarray]]:
    """(group, label, counted-face mask over all faces) for settings and the hard breakdown."""
    n = np.cumsum([0] + [im.num_faces for im in gt.images])
    total = int(n[-1])
    out = []
    keep = {}
    for s in SETTINGS:
        mask = np.zeros(total, dtype=bool)
        idx = [im.keep[s] + n[i] for i, im in enumerate(gt.images)]
        if idx:
            mask[np.concatenate(idx)] = True
        keep[s] = mask
        out.append(("setting", s, mask))
    hard = keep["hard"]
    for attr, values in BREAKDOWN_VALUES.items():
        labels = np.concatenate([im.attributes[attr] for im in gt.images]) if len(gt) else np.zeros(0, np.int64)
        out += [(attr, str(v), hard & (labels == v)) for v in values]
    h = np.concatenate([im.boxes[:, 3] for im in gt.images]) if len(gt) else np.zeros(0)
    scale = {"small": (h >= 10) & (h < 50), "medium": (h >= 50) & (h <= 300), "large": h > 300}
    out += [("scale", b, hard & scale[b]) for b in SCALE_BINS]
    return out


@dataclass(frozen=True, eq=False)
class Matches:
    """Every prediction on a ground-truth image with faces, matched once (setting-independent).

    Arrays are per prediction, ordered by image then score descending. ``start``: index of the
    first threshold the normalised score reaches (``thresh_num`` if none); a prediction counts at
    that threshold and every lower one. ``face``: global index of its best-IoU face; ``matched``:
    that IoU reaches the threshold; ``first``: the first matched prediction of its face (the one
    that can recall it). ``score``: the raw (unnormalised) score. A subset of counted faces turns
    these into TP / proposal flags.
    """

    image: np.ndarray
    score: np.ndarray
    start: np.ndarray
    face: np.ndarray
    matched: np.ndarray
    first: np.ndarray
    thresh_num: int
    score_range: tuple[float, float]
    num_predictions: int
    num_images_without_predictions: int
    num_unknown_images: int

    def flags(self, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(proposal, true positive) flags per prediction when only ``counted`` faces count."""
        kept = counted[self.face]
        return ~(self.matched & ~kept), self.first & kept


def match_predictions(
    pred: Mapping[str, Mapping[str, ArrayLike]], gt: WiderGT, iou_thresh: float = 0.5, thresh_num: int = 1000
) -> Matches:
    """Normalise scores over the whole prediction set, sort per image, match each prediction once."""
    if thresh_num < 1:
        raise ValueError("thresh_num must be >= 1")
    arrays = {ev: {name: _as_pred(f"{ev}/{name}", b) for name, b in imgs.items()} for ev, imgs in pred.items()}
    lo, hi = _score_range(arrays)
    faces = _faces(gt)

    chunks, owners = [], []
    without = 0
    for i, im in enumerate(gt.images):
        boxes = arrays.get(im.event, {}).get(im.name)
        if boxes is None or not len(boxes):
            without += 1
            continue
        if im.num_faces:
            chunks.append(boxes)
            owners.append(np.full(len(boxes), i))
    known = gt.index
    unknown = sum((ev, name) not in known for ev, imgs in arrays.items() for name in imgs)
    boxes = np.concatenate(chunks) if chunks else np.zeros((0, 5))
    image = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)

    score = _normalise(boxes[:, 4], lo, hi)
    order = np.lexsort((-score, image))  # per image, score descending, stable
    boxes, image, score = boxes[order], image[order], score[order]

    best_iou, best = _best_faces(boxes, image, faces)
    matched = best_iou >= iou_thresh
    # The first matched prediction of a face (in per-image score order) is the one that can recall it.
    first = np.zeros(len(boxes), dtype=bool)
    hits = np.flatnonzero(matched)
    first[hits[np.unique(best[hits], return_index=True)[1]]] = True

    # A prediction counts at every threshold from the first one its score reaches.
    start = thresh_num - np.searchsorted(thresholds(thresh_num)[::-1], score, side="right")
    return Matches(
        image=image, score=boxes[:, 4], start=start, face=best, matched=matched, first=first, thresh_num=thresh_num,
        score_range=(lo, hi),
        num_predictions=sum(len(b) for imgs in arrays.values() for b in imgs.values()),
        num_images_without_predictions=without, num_unknown_images=unknown,
    )


def subset_result(m: Matches, counted: np.ndarray, name: str) -> SubsetResult:
    """PR curve and AP when only the ``counted`` faces count (steps 3-5 of the protocol)."""
    thresh_num = m.thresh_num

    def curve(flags: np.ndarray) -> np.ndarray:
        return np.cumsum(np.bincount(m.start[flags], minlength=thresh_num + 1)[:thresh_num])

    proposal, true_positive = m.flags(counted)
    proposals, tp = curve(proposal), curve(true_positive)
    num_faces = int(counted.sum())
    precision = np.zeros(thresh_num)
    np.divide(tp, proposals, out=precision, where=proposals > 0)
    recall = tp / num_faces if num_faces else np.zeros(thresh_num)
    return SubsetResult(name, voc_ap(recall, precision), num_faces, precision, recall)


def evaluate(
    pred: Mapping[str, Mapping[str, ArrayLike]],
    gt: WiderGT,
    iou_thresh: float = 0.5,
    thresh_num: int = 1000,
) -> WiderEvalResult:
    """AP and PR curves for easy/medium/hard plus the hard-set attribute breakdown.

    pred: event -> image name -> (N, 5) rows x y w h score (e.g. ``read_predictions(...).predictions``).
    GT images absent from pred have no predictions; pred images absent from gt only count in the
    score normalisation (as in the reference script).
    """
    m = match_predictions(pred, gt, iou_thresh, thresh_num)
    settings: dict[str, SubsetResult] = {}
    breakdown: dict[str, dict[str, SubsetResult]] = {}
    for group, label, counted in counted_subsets(gt):
        result = subset_result(m, counted, subset_name(group, label))
        if group == "setting":
            settings[label] = result
        else:
            breakdown.setdefault(group, {})[label] = result

    return WiderEvalResult(
        settings=settings,
        breakdown=breakdown,
        thresholds=thresholds(thresh_num),
        iou_thresh=iou_thresh,
        score_range=m.score_range,
        num_images=len(gt),
        num_predictions=m.num_predictions,
        num_matched_predictions=len(m.image),
        num_images_without_predictions=m.num_images_without_predictions,
        num_unknown_images=m.num_unknown_images,
    )


def build_parser() -> CliParser:
    parser = CliParser(
        prog="python -m eval.widerface",
        description="WIDER FACE val AP (RetinaFace widerface_evaluate protocol) with an attribute breakdown.",
    )
    parser.add_argument("--pred", required=True, type=input_dir, help="<pred>/<event>/<image>.txt directory")
    parser.add_argument("--gt", type=input_dir, default=DEFAULT_DATA / "ground_truth",
                        help=f"directory with the four wider_*_val.mat files (default {DEFAULT_DATA}/ground_truth)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--strict", dest="strict", action="store_true", default=True,
                      help="fail on any problem, naming file:line (default; includes a score outside [0, 1])")
    mode.add_argument("--lenient", dest="strict", action="store_false",
                      help="warn, skip bad lines, go on (scores above 1 are kept and their effect explained)")
    parser.add_argument("--json", type=output_file, help="also write results (with PR curves) to this JSON file")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU needed for a match (default 0.5)")
    parser.add_argument("--thresh-num", type=int, default=1000, help="score thresholds on the PR curve")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: read a submission directory and the official .mat ground truth, print the table."""
    args = build_parser().parse_checked(argv)
    try:
        gt = load_wider_gt(args.gt)
        read = read_predictions(args.pred, gt, strict=args.strict)
    except (WiderGTError, PredictionFormatError) as exc:
        return fail(exc)
    for w in read.warnings[:20]:
        print(f"warning: {w}", file=sys.stderr)
    if read.num_warnings > 20:
        print(f"warning: ... {read.num_warnings - 20} more", file=sys.stderr)
    above = [w for w in read.warnings if "outside [0, 1]" in w]
    if above:
        print(f"warning: {len(above)} score(s) above 1 kept (first: {above[0].split('; ')[0]}). Scores are min-max "
              "normalised over all files, so the largest becomes 1.0 and every other is divided by it; the "
              "detections then crowd into the lowest score thresholds and the AP below is not the model's. "
              "Rescale the scores to [0, 1], or use --strict to stop at the first one.", file=sys.stderr)
    result = evaluate(read.predictions, gt, iou_thresh=args.iou, thresh_num=args.thresh_num)
    print(result.table())
    if read.num_warnings:
        print(f"{read.num_warnings} warning(s) in lenient mode, see stderr")
    if args.json:
        payload = result.to_dict() | {"warnings": list(read.warnings)}
        atomic_write_text(args.json, json.dumps(payload, indent=1))
    return 0
