"""Anchor (prior box) generation, identical to RetinaFace's PriorBox."""

from __future__ import annotations

import math

import torch

from core.config import AnchorConfig


def feature_map_sizes(image_hw: tuple[int, int], steps: tuple[int, ...]) -> list[tuple[int, int]]:
    """Each level is ceil(size / step): what stride-2 convs with padding 1 produce."""
    h, w = image_hw
    return [(math.ceil(h / s), math.ceil(w / s)) for s in steps]


def generate_anchors(image_hw: tuple[int, int], cfg: AnchorConfig = AnchorConfig()) -> torch.Tensor:
    """Anchors as (A, 4) (cx, cy, w, h) normalised by the image size, level-major then row/col/anchor."""
    h, w = image_hw
    per_level = []
    for (fh, fw), step, sizes in zip(feature_map_sizes(image_hw, cfg.steps), cfg.steps, cfg.min_sizes,
                                     strict=True):
        cy, cx = torch.meshgrid((torch.arange(fh) + 0.5) * step / h, (torch.arange(fw) + 0.5) * step / w,
                                indexing="ij")
        cx = cx.reshape(-1, 1).expand(-1, len(sizes))
        cy = cy.reshape(-1, 1).expand(-1, len(sizes))
        sw = torch.tensor([s / w for s in sizes]).expand_as(cx)
        sh = torch.tensor([s / h for s in sizes]).expand_as(cy)
        per_level.append(torch.stack([cx, cy, sw, sh], dim=-1).reshape(-1, 4))
    anchors = torch.cat(per_level, dim=0)
    return anchors.clamp_(0, 1) if cfg.clip else anchors
