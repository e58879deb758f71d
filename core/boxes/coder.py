"""SSD/RetinaFace box and landmark coding against anchors with variances (0.1, 0.2)."""

from __future__ import annotations

import torch


def center_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)


def encode_boxes(matched: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Matched corner boxes (..., A, 4) -> regression targets (..., A, 4) relative to the anchors (A, 4)."""
    # In-place steps on fresh tensors: the same arithmetic with fewer batch-sized temporaries.
    g_cxcy = (matched[..., :2] + matched[..., 2:]).div_(2).sub_(anchors[..., :2]).div_(variances[0] * anchors[..., 2:])
    g_wh = (matched[..., 2:] - matched[..., :2]).clamp_(min=1e-8).div_(anchors[..., 2:]).log_().div_(variances[1])
    return torch.cat([g_cxcy, g_wh], dim=-1)


def decode_boxes(loc: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Regression outputs (..., A, 4) -> corner boxes normalised to [0, 1] image coordinates."""
    centers = anchors[..., :2] + loc[..., :2] * variances[0] * anchors[..., 2:]
    sizes = anchors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return center_to_corners(torch.cat([centers, sizes], dim=-1))


def encode_landmarks(matched: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Matched landmarks (..., A, 10) -> offsets (..., A, 10) from the anchor centre in units of its size."""
    pts = matched.reshape(*matched.shape[:-1], 5, 2)
    return (pts - anchors[..., None, :2]).div_(variances[0] * anchors[..., None, 2:]).reshape(matched.shape)


def decode_landmarks(pre: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Landmark outputs (..., A, 10) -> normalised (x, y) for the five points."""
    shape = pre.shape
    pts = pre.reshape(*shape[:-1], 5, 2)
    out = anchors[..., None, :2] + pts * variances[0] * anchors[..., None, 2:]
    return out.reshape(shape)
