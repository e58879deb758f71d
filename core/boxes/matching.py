"""Anchor-to-face assignment by IoU, as RetinaFace's `match` (threshold 0.35, best anchor forced).

The whole batch is matched at once: the faces of all images are concatenated (``flatten_targets``,
on the host, one copy to the device) and each carries its image index, so the IoU matrix is
(all faces x anchors), as large as the per-image matrices together, where padding every image to
the most crowded one (WIDER has images with hundreds of faces) would multiply it. Per-image
maxima are scatter reductions; there is no per-image Python loop, no boolean indexing and no
``nonzero`` (each of which waits for the GPU), so matching queues without a host sync.
``tests/core/loss_oracle.py`` keeps the former per-image code; the targets are bitwise equal.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from core.boxes.coder import center_to_corners, encode_boxes, encode_landmarks
from core.config import MATCH_IOU

MIN_FORCED_IOU = 0.2  # a face whose best anchor overlaps it less than this is left unmatched


class FlatTargets(NamedTuple):
    """The faces of a batch, concatenated: (F,4) corner boxes, (F,) labels, (F,10) landmarks, (F,) image index."""

    boxes: torch.Tensor
    labels: torch.Tensor
    landmarks: torch.Tensor
    image_index: torch.Tensor
    num_images: int


def flatten_targets(targets: list[torch.Tensor], device: torch.device | None = None) -> FlatTargets:
    """B tensors (N_i, 15) (normalised xyxy, 10 landmarks, label) -> `FlatTargets` on ``device``.

    Built where the targets are (the loader's CPU tensors) and moved in one copy, from pinned memory
    on CUDA so that the copy does not make the host wait.
    """
    rows = [t.reshape(-1, 15).float() for t in targets]
    faces = torch.cat(rows) if rows else torch.zeros(0, 15)
    index = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor([r.shape[0] for r in rows], dtype=torch.long))
    index = index.to(faces.device)
    if device is not None and faces.device != torch.device(device):
        if torch.device(device).type == "cuda" and faces.device.type == "cpu":
            faces, index = faces.pin_memory(), index.pin_memory()
        faces, index = faces.to(device, non_blocking=True), index.to(device, non_blocking=True)
    return FlatTargets(faces[:, :4], faces[:, 14], faces[:, 4:14], index, len(rows))


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """(N,4) x (M,4) corner boxes -> (N,M) IoU; torchvision's formula op for op (bitwise equal), computed per
    coordinate on contiguous (N,M) planes, which is several times faster on CPU than (N,M,2) broadcasts."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    b1, b2 = boxes1.T.contiguous()[:, :, None], boxes2.T.contiguous()[:, None, :]
    w = (torch.minimum(b1[2], b2[2]) - torch.maximum(b1[0], b2[0])).clamp(min=0)
    h = (torch.minimum(b1[3], b2[3]) - torch.maximum(b1[1], b2[1])).clamp(min=0)
    inter = w * h
    return inter / (area1[:, None] + area2 - inter)


def match_anchors(
    targets: FlatTargets,
    anchors: torch.Tensor,
    threshold: float = MATCH_IOU,
    variances: tuple[float, float] = (0.1, 0.2),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign each anchor of each image one of that image's faces (or background) and encode its targets.

    anchors: (A,4) centre form. Labels are 1 for faces with landmarks, -1 without. Returns (loc_t
    (B,A,4), conf_t (B,A) in {-1,0,1}, landm_t (B,A,10)). An anchor takes the face it overlaps most
    (the first such face on ties) when that IoU reaches ``threshold``. Every face also keeps its
    best anchor even below the threshold, unless that anchor's IoU is under 0.2 (the face is then
    too small or oddly shaped for any anchor and is left out); when two faces force the same
    anchor, the later face wins (the reference's loop order). An image without faces gets label 0
    and zero box/landmark targets everywhere.
    """
    batch, num_faces, num_anchors = targets.num_images, targets.boxes.shape[0], anchors.shape[0]
    if num_faces == 0:
        zeros = anchors.new_zeros
        return zeros(batch, num_anchors, 4), zeros(batch, num_anchors, dtype=torch.long), zeros(batch, num_anchors, 10)
    image = targets.image_index
    overlaps = box_iou(targets.boxes, center_to_corners(anchors))  # (F, A)
    best_anchor_iou, best_anchor = overlaps.max(dim=1)  # (F,): each face's best anchor

    # Each anchor's best face within its image: the highest IoU, then the first face reaching it.
    rows = image[:, None].expand(-1, num_anchors)
    best_truth_iou = overlaps.new_full((batch, num_anchors), -1.0).scatter_reduce(0, rows, overlaps, "amax")
    face_id = torch.arange(num_faces, device=overlaps.device, dtype=torch.int32)
    reaching = overlaps == best_truth_iou.gather(0, rows)
    best_truth = torch.full((batch, num_anchors), num_faces, dtype=torch.int32, device=overlaps.device)
    best_truth = best_truth.scatter_reduce(0, rows, torch.where(reaching, face_id[:, None], num_faces), "amin")

    forcing = best_anchor_iou >= MIN_FORCED_IOU
    forced_by = torch.full((batch * num_anchors,), -1, dtype=torch.int32, device=overlaps.device).scatter_reduce(
        0, image * num_anchors + best_anchor, torch.where(forcing, face_id, -1), "amax").view(batch, num_anchors)
    is_forced = forced_by >= 0
    best_truth = torch.where(is_forced, forced_by, best_truth).long().clamp_(max=num_faces - 1)
    best_truth_iou = best_truth_iou.masked_fill(is_forced, 2.0)

    has_faces = best_truth_iou[:, :1] >= 0  # IoU is >= 0 for any real face, -1 where an image has none
    conf = targets.labels[best_truth].long().masked_fill(best_truth_iou < threshold, 0)
    loc = encode_boxes(targets.boxes[best_truth], anchors, variances)
    landm = encode_landmarks(targets.landmarks[best_truth], anchors, variances)
    return torch.where(has_faces[..., None], loc, 0.0), conf, torch.where(has_faces[..., None], landm, 0.0)
