"""RetinaFace's FPN neck over three levels: 1x1 laterals, top-down nearest upsampling, 3x3 merges.

Used by the `retinaface_mnet` baseline. As in RetinaFace-mobilenet0.25, every conv is followed by BN and
LeakyReLU (slope 0.1 when the neck is at most 64 channels wide, plain ReLU otherwise), and the top level
(P5) is the lateral projection alone, with no merge conv. 103,040 parameters at 64 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.layers.conv import conv_bn, conv_bn1x1


class FPN(nn.Module):
    """(C3, C4, C5) -> (P3, P4, P5), all `channels` wide, at the input strides."""

    def __init__(self, in_channels: tuple[int, int, int], channels: int) -> None:
        super().__init__()
        leaky = 0.1 if channels <= 64 else 0.0
        self.lateral = nn.ModuleList(conv_bn1x1(c, channels, leaky=leaky) for c in in_channels)
        self.merge = nn.ModuleList(conv_bn(channels, channels, 1, leaky=leaky) for _ in in_channels[:-1])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        outs = [laterals[-1]]
        for lateral, merge in zip(reversed(laterals[:-1]), reversed(self.merge), strict=True):
            up = F.interpolate(outs[0], size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, merge(lateral + up))
        return outs
