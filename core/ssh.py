"""SSH context module (Najibi et al. 2017): deformable (FeatherFace) or plain (RetinaFace) 3x3 convs,
then an optional channel shuffle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.layers.deform_conv import ModulatedDeformConv2d


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's parameter-free shuffle: interleave channels across `groups`."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ContextConvBN(nn.Module):
    """3x3 conv (deformable or plain, no bias) + BN, optionally followed by LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, leaky: float | None, deformable: bool = True) -> None:
        super().__init__()
        self.conv = (ModulatedDeformConv2d(in_ch, out_ch) if deformable
                     else nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False))
        self.bn = nn.BatchNorm2d(out_ch)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.leaky_relu(x, self.leaky) if self.leaky is not None else x


class SSH(nn.Module):
    """3x3, 5x5 (two 3x3) and 7x7 (three 3x3, sharing the first) branches, concatenated.

    Five 3x3 convs. FeatherFace: deformable, 57,855 parameters at 52 channels, output channel-shuffled
    in 2 groups so the three receptive-field branches mix before the 1x1 heads. RetinaFace: plain
    convs, no shuffle (`shuffle_groups=1`), 34,752 parameters at 64 channels.
    """

    def __init__(self, in_ch: int, out_ch: int, shuffle_groups: int = 2, deformable: bool = True) -> None:
        super().__init__()
        if out_ch % 4 != 0:
            raise ValueError(f"SSH output channels must be divisible by 4, got {out_ch}")
        leaky = 0.1 if out_ch <= 64 else 0.0
        self.conv3x3 = ContextConvBN(in_ch, out_ch // 2, None, deformable)
        self.conv5x5_1 = ContextConvBN(in_ch, out_ch // 4, leaky, deformable)
        self.conv5x5_2 = ContextConvBN(out_ch // 4, out_ch // 4, None, deformable)
        self.conv7x7_2 = ContextConvBN(out_ch // 4, out_ch // 4, leaky, deformable)
        self.conv7x7_3 = ContextConvBN(out_ch // 4, out_ch // 4, None, deformable)
        self.shuffle_groups = shuffle_groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3x3(x)
        mid = self.conv5x5_1(x)
        branch5 = self.conv5x5_2(mid)
        branch7 = self.conv7x7_3(self.conv7x7_2(mid))
        out = F.relu(torch.cat([branch3, branch5, branch7], dim=1))
        return channel_shuffle(out, self.shuffle_groups) if self.shuffle_groups > 1 else out
