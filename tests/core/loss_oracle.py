"""The per-image matching and loss as they were before batching: a test and benchmark oracle only.

Frozen copy of the former ``core.boxes.matching.match_anchors`` / ``core.losses.build_targets`` /
``hard_negative_mask`` / ``MultiBoxLoss.forward`` (one image at a time, boolean indexing). The
batched code in ``core`` must give bitwise the same targets and gradients, and the same loss terms
up to float32 rounding (tests/core/test_losses.py); ``benchmarks/bench_matching_loss.py`` times both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.boxes.coder import center_to_corners, encode_boxes, encode_landmarks
from core.losses import LossTerms


def hard_negative_mask_double_argsort(
    cls_loss: torch.Tensor, positive: torch.Tensor, neg_pos_ratio: int
) -> torch.Tensor:
    ranked = cls_loss.detach().masked_fill(positive, 0.0)
    order = ranked.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    num_pos = positive.sum(dim=1, keepdim=True)
    num_neg = (neg_pos_ratio * num_pos).clamp(max=positive.shape[1] - 1)
    return (rank < num_neg) & ~positive


def match_one_image(
    truths: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor, anchors: torch.Tensor,
    threshold: float = 0.35, variances: tuple[float, float] = (0.1, 0.2),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def build_targets_per_image(
    targets: list[torch.Tensor], anchors: torch.Tensor, threshold: float = 0.35,
    variances: tuple[float, float] = (0.1, 0.2),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    locs, confs, landms = [], [], []
    for t in targets:
        t = t.to(anchors.device, torch.float32).reshape(-1, 15)
        loc, conf, landm = match_one_image(t[:, :4], t[:, 14], t[:, 4:14], anchors, threshold, variances)
        locs.append(loc)
        confs.append(conf)
        landms.append(landm)
    return torch.stack(locs), torch.stack(confs), torch.stack(landms)


def multibox_loss_per_image(
    predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor], anchors: torch.Tensor, targets: list[torch.Tensor],
    variances: tuple[float, float] = (0.1, 0.2), threshold: float = 0.35, neg_pos_ratio: int = 7,
    box_weight: float = 2.0, landmark_weight: float = 1.0,
) -> LossTerms:
    loc, conf, landm = (p.float() for p in predictions)
    with torch.no_grad():
        loc_t, conf_t, landm_t = build_targets_per_image(targets, anchors, threshold, variances)
    positive = conf_t != 0
    with_landmarks = conf_t > 0
    num_pos = positive.sum().clamp(min=1).float()
    num_landm = with_landmarks.sum().clamp(min=1).float()
    box = F.smooth_l1_loss(loc[positive], loc_t[positive], reduction="sum") / num_pos
    landmark = F.smooth_l1_loss(landm[with_landmarks], landm_t[with_landmarks], reduction="sum") / num_landm
    labels = positive.long()
    per_anchor = F.cross_entropy(conf.reshape(-1, 2), labels.reshape(-1), reduction="none").view_as(labels)
    chosen = positive | hard_negative_mask_double_argsort(per_anchor, positive, neg_pos_ratio)
    cls = per_anchor[chosen].sum() / num_pos
    total = box_weight * box + cls + landmark_weight * landmark
    return LossTerms(total, box, cls, landmark)
