"""1x1 prediction heads per pyramid level: class scores, box offsets and landmark offsets."""

from __future__ import annotations

import torch
from torch import nn


class _LevelHead(nn.Module):
    """One 1x1 conv per level producing `per_anchor` values for each of `num_anchors` anchors."""

    def __init__(self, in_ch: int, num_anchors: int, per_anchor: int, num_levels: int) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.convs = nn.ModuleList(nn.Conv2d(in_ch, num_anchors * per_anchor, 1) for _ in range(num_levels))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        outs = [conv(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, self.per_anchor)
                for conv, f in zip(self.convs, feats, strict=True)]
        return torch.cat(outs, dim=1)


class DetectionHead(nn.Module):
    """Returns (box offsets (B,A,4), class logits (B,A,2), landmark offsets (B,A,10)); anchor order
    is level, then row, then column, then anchor — the order `core.boxes.anchors.generate_anchors` uses."""

    def __init__(self, in_ch: int, num_anchors: int = 2, num_levels: int = 3) -> None:
        super().__init__()
        self.bbox = _LevelHead(in_ch, num_anchors, 4, num_levels)
        self.cls = _LevelHead(in_ch, num_anchors, 2, num_levels)
        self.landmark = _LevelHead(in_ch, num_anchors, 10, num_levels)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.bbox(feats), self.cls(feats), self.landmark(feats)
