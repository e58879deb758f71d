"""BiFPN neck (EfficientDet-D0 cell, Tan et al. 2020) over three levels P3/P4/P5.

Fast normalised fusion (w_i = relu(w_i) / (sum w + eps)), swish before each depthwise-separable conv.
Resizing uses nearest upsampling and 3x3/2 max pooling to the exact size of the target level, so odd
input sizes (e.g. 333x517) work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeparableConvBlock(nn.Module):
    """Depthwise 3x3 (no bias) + pointwise 1x1 (bias) + BN, as EfficientDet's BiFPN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


def _projection(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch, momentum=0.01, eps=1e-3))


class FastFusion(nn.Module):
    """Weighted sum of same-shaped inputs with learnable non-negative normalised weights."""

    def __init__(self, num_inputs: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_inputs))
        self.eps = eps

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        w = F.relu(self.weight)
        w = w / (w.sum() + self.eps)
        out = inputs[0] * w[0]
        for i in range(1, len(inputs)):
            out = out + inputs[i] * w[i]
        return F.silu(out)


def _upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


def _downsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    out = F.max_pool2d(x, 3, 2, 1)
    if out.shape[-2:] != ref.shape[-2:]:
        out = F.interpolate(out, size=ref.shape[-2:], mode="nearest")
    return out


class BiFPNCell(nn.Module):
    """One top-down + bottom-up pass.

    The first cell projects the backbone stages to `channels`, with separate projections for the
    bottom-up path (as EfficientDet does). The P5 output fuses three inputs like P4's: the cell's P5
    input, P5's top-down node (at the top level that node is the P5 input itself, so in cells 2-3
    those two weights act on the same tensor) and the downsampled P4 output.
    """

    def __init__(self, channels: int, in_channels: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.first = in_channels is not None
        if in_channels is not None:
            self.p3_in = _projection(in_channels[0], channels)
            self.p4_in = _projection(in_channels[1], channels)
            self.p5_in = _projection(in_channels[2], channels)
            self.p4_in_2 = _projection(in_channels[1], channels)
            self.p5_in_2 = _projection(in_channels[2], channels)
        self.fuse_p4_td = FastFusion(2)
        self.fuse_p3_out = FastFusion(2)
        self.fuse_p4_out = FastFusion(3)
        self.fuse_p5_out = FastFusion(3)
        self.conv_p4_td = SeparableConvBlock(channels)
        self.conv_p3_out = SeparableConvBlock(channels)
        self.conv_p4_out = SeparableConvBlock(channels)
        self.conv_p5_out = SeparableConvBlock(channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = feats
        if self.first:
            p3, p4, p5 = self.p3_in(c3), self.p4_in(c4), self.p5_in(c5)
        else:
            p3, p4, p5 = c3, c4, c5
        p4_td = self.conv_p4_td(self.fuse_p4_td([p4, _upsample_to(p5, p4)]))
        p3_out = self.conv_p3_out(self.fuse_p3_out([p3, _upsample_to(p4_td, p3)]))
        p4_skip, p5_skip = (self.p4_in_2(c4), self.p5_in_2(c5)) if self.first else (p4, p5)
        p4_out = self.conv_p4_out(self.fuse_p4_out([p4_skip, p4_td, _downsample_to(p3_out, p4)]))
        p5_out = self.conv_p5_out(self.fuse_p5_out([p5_skip, p5, _downsample_to(p4_out, p5)]))
        return [p3_out, p4_out, p5_out]


class BiFPN(nn.Module):
    """`repeats` stacked cells; 84,010 parameters at 52 channels and 3 repeats."""

    def __init__(self, in_channels: tuple[int, int, int], channels: int, repeats: int = 3) -> None:
        super().__init__()
        cells = [BiFPNCell(channels, in_channels)] + [BiFPNCell(channels) for _ in range(repeats - 1)]
        self.cells = nn.Sequential(*cells)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.cells(feats)
