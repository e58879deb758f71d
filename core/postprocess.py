"""From raw head outputs to detections: decode against anchors, threshold, NMS (torchvision).

torchvision.ops is imported where used, here and in core.matching / core.layers.deform_conv: it pulls in
torch._dynamo (~1.2 s), which the dashboard's first page does not need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.box_coder import decode_boxes, decode_landmarks


@dataclass(frozen=True)
class Detections:
    """Detections in pixel coordinates of the input image, sorted by score (descending)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def postprocess(
    loc: torch.Tensor,
    conf_logits: torch.Tensor,
    landm: torch.Tensor,
    anchors: torch.Tensor,
    image_hw: tuple[int, int],
    variances: tuple[float, float] = (0.1, 0.2),
    conf_thresh: float = 0.02,
    nms_thresh: float = 0.4,
    top_k: int = 5000,
    keep_top_k: int = 750,
) -> Detections:
    """One image's outputs (A,4), (A,2), (A,10) -> `Detections` (RetinaFace test defaults)."""
    from torchvision.ops import nms

    h, w = image_hw
    scores = torch.softmax(conf_logits.float(), dim=-1)[:, 1]
    keep = scores > conf_thresh
    scores = scores[keep]
    order = scores.argsort(descending=True)[:top_k]
    scores = scores[order]
    boxes = decode_boxes(loc[keep][order].float(), anchors[keep][order], variances)
    lms = decode_landmarks(landm[keep][order].float(), anchors[keep][order], variances)
    boxes = boxes * boxes.new_tensor([w, h, w, h])
    lms = lms * lms.new_tensor([w, h] * 5)
    kept = nms(boxes, scores, nms_thresh)[:keep_top_k]
    return Detections(
        boxes=boxes[kept].cpu().numpy().astype(np.float32),
        scores=scores[kept].cpu().numpy().astype(np.float32),
        landmarks=lms[kept].cpu().numpy().astype(np.float32),
    )
