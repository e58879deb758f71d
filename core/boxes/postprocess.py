"""From raw head outputs to detections: decode against anchors, threshold, top-k, NMS, keep-top-k.

NMS follows RetinaFace's test script (`py_cpu_nms`): box areas and overlaps count pixels inclusively,
(x2 - x1 + 1) * (y2 - y1 + 1), a box is dropped when its IoU with a kept one is strictly above the
threshold. `nms(..., pixel_inclusive=False)` is torchvision's continuous-area rule.

torchvision.ops is imported where used, here and in core.boxes.matching / core.layers.deform_conv: it pulls in
torch._dynamo (~1.2 s), which the dashboard's first page does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.boxes.coder import decode_boxes, decode_landmarks
from core.config import TEST_KEEP_TOP_K, TEST_TOP_K

NmsMethod = Literal["pixel", "torchvision"]
NMS_METHODS: tuple[str, ...] = ("pixel", "torchvision")


@dataclass(frozen=True)
class Detections:
    """Detections in pixel coordinates of the input image, sorted by score (descending)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, pixel_inclusive: bool = True) -> torch.Tensor:
    """Greedy NMS on (N,4) x1y1x2y2 boxes; returns the kept indices (long) in descending score order.

    `pixel_inclusive=True` is RetinaFace's rule: widths and intersections get +1, which is exactly
    torchvision's `nms` on boxes whose x2, y2 are shifted by one pixel, so the fast C++/CUDA kernel runs
    it. A box is suppressed when its IoU with a kept box is strictly greater than `iou_threshold`,
    compared in the boxes' precision (as the reference's float32 numpy does: an IoU that rounds to the
    threshold is kept). Equal scores are taken in index order (lower index first), on every device.
    """
    from torchvision.ops import nms as tv_nms

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = boxes[order]
    if pixel_inclusive:
        ranked = torch.cat([ranked[:, :2], ranked[:, 2:] + 1], dim=1)
    # Strictly decreasing stand-in scores: torchvision's own (unstable) sort then keeps our tie order.
    rank = torch.arange(ranked.shape[0], 0, -1, dtype=ranked.dtype, device=ranked.device)
    threshold = float(torch.tensor(iou_threshold, dtype=ranked.dtype))
    return order[tv_nms(ranked, rank, threshold)]


def postprocess(
    loc: torch.Tensor,
    conf_logits: torch.Tensor,
    landm: torch.Tensor,
    anchors: torch.Tensor,
    image_hw: tuple[int, int],
    variances: tuple[float, float] = (0.1, 0.2),
    conf_thresh: float = 0.02,
    nms_thresh: float = 0.4,
    top_k: int = TEST_TOP_K,
    keep_top_k: int = TEST_KEEP_TOP_K,
    nms_method: NmsMethod = "pixel",
) -> Detections:
    """One image's outputs (A,4), (A,2), (A,10) -> `Detections`.

    Scores strictly above `conf_thresh` survive; the `top_k` best go to NMS and the `keep_top_k` best
    survivors are returned (0 = no cap; RetinaFace's test script has no caps, FeatherFace's 5000/750).
    """
    if nms_method not in NMS_METHODS:
        raise ValueError(f"unknown NMS method {nms_method!r}; choose one of {list(NMS_METHODS)}")
    if top_k < 0 or keep_top_k < 0:
        raise ValueError(f"top_k and keep_top_k must be >= 0 (0 = no cap), got {top_k} and {keep_top_k}")
    h, w = image_hw
    scores = torch.softmax(conf_logits.float(), dim=-1)[:, 1]
    keep = scores > conf_thresh
    scores = scores[keep]
    order = torch.sort(scores, descending=True, stable=True).indices
    if top_k:
        order = order[:top_k]
    scores = scores[order]
    boxes = decode_boxes(loc[keep][order].float(), anchors[keep][order], variances)
    lms = decode_landmarks(landm[keep][order].float(), anchors[keep][order], variances)
    boxes = boxes * boxes.new_tensor([w, h, w, h])
    lms = lms * lms.new_tensor([w, h] * 5)
    kept = nms(boxes, scores, nms_thresh, pixel_inclusive=nms_method == "pixel")
    if keep_top_k:
        kept = kept[:keep_top_k]
    return Detections(
        boxes=boxes[kept].cpu().numpy().astype(np.float32),
        scores=scores[kept].cpu().numpy().astype(np.float32),
        landmarks=lms[kept].cpu().numpy().astype(np.float32),
    )
