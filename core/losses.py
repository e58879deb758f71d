"""RetinaFace's MultiBoxLoss: anchor matching, 7:1 hard negative mining, box/class/landmark terms.

Conventions (Pytorch_Retinaface ``layers/modules/multibox_loss.py``):

- every image is matched to its own faces (``core.boxes.matching.match_anchors``, IoU ``overlap_threshold``,
  0.35 as ``MultiBoxLoss(num_classes, 0.35, True, 0, True, 7, 0.35, False)`` in RetinaFace's train.py), the whole
  batch at once on the concatenated faces; an anchor's target label is 1 (face with landmarks),
  -1 (face without landmarks) or 0 (background);
- positives are anchors with label != 0; they get the smooth-L1 box term and count as "face" in
  the classification term;
- hard negative mining keeps, per image, the ``neg_pos_ratio * num_pos`` background anchors (7, the
  same call, and FeatherFace's train scripts) with the highest classification loss (an image without
  positives contributes no classification loss, as in the reference);
- the landmark term uses only positives whose face has landmarks (label 1);
- every term is a sum normalised by the number of positives in the batch (the landmark term by
  the positives with landmarks), each count at least 1.

``total = box_weight * box + cls + landmark_weight * landmark`` with ``box_weight = 2.0`` (the
published ``loc_weight``); the returned ``box`` term is unweighted so logs compare with RetinaFace's.

Selections are masks multiplied into per-anchor losses, never boolean indexing, so on CUDA a step
computes its loss without waiting for the GPU (the old per-image path, a test oracle in
``tests/core/loss_oracle.py``, synced about twice per image).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.boxes.matching import flatten_targets, match_anchors
from core.config import MATCH_IOU, NEG_POS


class LossTerms(NamedTuple):
    """Scalar tensors; ``total`` carries the gradient, the others are for logging (also differentiable)."""

    total: torch.Tensor
    box: torch.Tensor
    cls: torch.Tensor
    landmark: torch.Tensor


def build_targets(
    targets: list[torch.Tensor],
    anchors: torch.Tensor,
    threshold: float = MATCH_IOU,
    variances: tuple[float, float] = (0.1, 0.2),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B tensors (N_i,15) of normalised targets -> (B,A,4), (B,A) long, (B,A,10), matched in one pass."""
    return match_anchors(flatten_targets(targets, anchors.device), anchors, threshold, variances)


def hard_negative_mask(cls_loss: torch.Tensor, positive: torch.Tensor, neg_pos_ratio: int) -> torch.Tensor:
    """(B,A) bool: per image, the ``neg_pos_ratio * num_pos`` hardest background anchors.

    Ranking by one sort (rank of each anchor in its image's descending loss order, the inverse
    permutation scattered back), so the whole batch is mined at once.
    """
    ranked = cls_loss.detach().masked_fill(positive, 0.0)
    order = ranked.argsort(dim=1, descending=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    num_pos = positive.sum(dim=1, keepdim=True)
    num_neg = (neg_pos_ratio * num_pos).clamp(max=positive.shape[1] - 1)
    return (rank < num_neg) & ~positive


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` (B,A[,K]) over the anchors where ``mask`` (B,A) is set; no gradient elsewhere.

    Per-anchor sums first, so the mask is applied to (B,A) rather than (B,A,K) (a third of the time on CPU).
    """
    if values.dim() > mask.dim():
        values = values.sum(dim=-1)
    return torch.where(mask, values, 0.0).sum()


class MultiBoxLoss(nn.Module):
    """``loss(predictions, anchors, targets) -> LossTerms`` for raw FeatherFace outputs.

    predictions: (loc (B,A,4), conf logits (B,A,2), landm (B,A,10)); anchors: (A,4) centre form;
    targets: list of B tensors (N_i, 15) as produced by the dataset (normalised xyxy, landmarks, ±1).
    The loss is computed in float32 even under autocast, since the sums over ~17k anchors and the
    mining ranks are not safe in half precision.
    """

    def __init__(
        self,
        variances: tuple[float, float] = (0.1, 0.2),
        overlap_threshold: float = MATCH_IOU,
        neg_pos_ratio: int = NEG_POS,
        box_weight: float = 2.0,
        landmark_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.variances = tuple(variances)
        self.overlap_threshold = overlap_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.box_weight = box_weight
        self.landmark_weight = landmark_weight

    def forward(
        self,
        predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        anchors: torch.Tensor,
        targets: list[torch.Tensor],
    ) -> LossTerms:
        loc, conf, landm = (p.float() for p in predictions)
        with torch.no_grad():
            loc_t, conf_t, landm_t = build_targets(targets, anchors, self.overlap_threshold, self.variances)

        positive = conf_t != 0
        with_landmarks = conf_t > 0
        num_pos = positive.sum().clamp(min=1).float()
        num_landm = with_landmarks.sum().clamp(min=1).float()

        box = masked_sum(F.smooth_l1_loss(loc, loc_t, reduction="none"), positive) / num_pos
        landmark = masked_sum(F.smooth_l1_loss(landm, landm_t, reduction="none"), with_landmarks) / num_landm

        labels = positive.long()  # faces with and without landmarks are both class 1
        per_anchor = F.cross_entropy(conf.reshape(-1, 2), labels.reshape(-1), reduction="none").view_as(labels)
        chosen = positive | hard_negative_mask(per_anchor, positive, self.neg_pos_ratio)
        cls = masked_sum(per_anchor, chosen) / num_pos

        total = self.box_weight * box + cls + self.landmark_weight * landmark
        return LossTerms(total, box, cls, landmark)
