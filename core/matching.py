"""Anchor-to-face assignment by IoU, as RetinaFace's `match` (threshold 0.35, best anchor forced)."""

from __future__ import annotations

import torch

from core.box_coder import center_to_corners, encode_boxes, encode_landmarks


def match_anchors(
    truths: torch.Tensor,
    labels: torch.Tensor,
    landmarks: torch.Tensor,
    anchors: torch.Tensor,
    threshold: float = 0.35,
    variances: tuple[float, float] = (0.1, 0.2),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign each anchor a face (or background) and encode its targets.

    truths: (N,4) normalised corner boxes; labels: (N,) 1 for faces with landmarks, -1 without;
    landmarks: (N,10); anchors: (A,4) centre form. Returns (loc_t (A,4), conf_t (A,) in {-1,0,1},
    landm_t (A,10)). Every face keeps its best anchor even below the threshold, unless that anchor's
    IoU is under 0.2 (the face is then too small or oddly shaped for any anchor and is left out).
    """
    from torchvision.ops import box_iou

    num_anchors = anchors.shape[0]
    if truths.numel() == 0:
        zeros = anchors.new_zeros
        return zeros(num_anchors, 4), zeros(num_anchors, dtype=torch.long), zeros(num_anchors, 10)
    overlaps = box_iou(truths, center_to_corners(anchors))
    best_anchor_iou, best_anchor = overlaps.max(dim=1)
    valid = best_anchor_iou >= 0.2
    best_truth_iou, best_truth = overlaps.max(dim=0)
    forced = best_anchor[valid]
    best_truth_iou[forced] = 2.0
    best_truth[forced] = torch.nonzero(valid).squeeze(1)
    conf = labels[best_truth].long()
    conf[best_truth_iou < threshold] = 0
    loc = encode_boxes(truths[best_truth], anchors, variances)
    landm = encode_landmarks(landmarks[best_truth], anchors, variances)
    return loc, conf, landm
