"""BiFPN neck (EfficientDet-D0 cell, Tan et al. 2020) over three levels P3/P4/P5.

Fast normalised fusion (w_i = relu(w_i) / (sum w + eps)), swish before each depthwise-separable conv.
Resizing uses nearest upsampling to the target level's size and TensorFlow-"same" 3x3/2 max pooling
(ceil(n/2) outputs, so odd input sizes such as 333x517 work), as the seed source's BiFPN
(fokouarnaud/FeatherFace@f023145 models/net.py:349-493) computes them, P5 fusion quirk included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DOWNSAMPLES: tuple[str, ...] = ("same", "pad1")
P5_FUSIONS: tuple[str, ...] = ("source", "three")


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
    """Weighted sum of same-shaped inputs with learnable non-negative normalised weights, then swish.

    Given fewer inputs than weights, the extra weights still count in the normaliser: the source's P5
    output node has three weights but sums two terms (see `BiFPNCell`).
    """

    def __init__(self, num_weights: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_weights))
        self.num_weights = num_weights
        self.eps = eps

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if len(inputs) > self.num_weights:
            raise ValueError(f"{len(inputs)} inputs for {self.num_weights} fusion weights")
        w = F.relu(self.weight)
        w = w / (w.sum() + self.eps)
        out = inputs[0] * w[0]
        for i in range(1, len(inputs)):
            out = out + inputs[i] * w[i]
        return F.silu(out)


def _upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3/2 max pooling with TensorFlow "same" padding, as the source's `MaxPool2dStaticSamePadding(3, 2)`
    (net.py:163-199): ceil(n/2) outputs; a side of even length n gets one ZERO (not -inf) on the right/bottom
    only, an odd one a zero on each side. Zeros matter: BiFPN nodes end in BN with no activation, so
    border windows of negative values pool to 0.

    Computed on the flipped map, where both cases are "one zero on each side, windows from -1", so the
    padding does not depend on the size and a dynamic-shape ONNX export stays right at any parity.
    """
    flipped = F.pad(x.flip(-2, -1), [1, 1, 1, 1])
    return F.max_pool2d(flipped, 3, 2).flip(-2, -1)


def _max_pool_pad1(x: torch.Tensor) -> torch.Tensor:
    """This project's earlier downsampling (`bifpn_downsample="pad1"`): symmetric -inf padding of 1."""
    return F.max_pool2d(x, 3, 2, 1)


class BiFPNCell(nn.Module):
    """One top-down + bottom-up pass.

    The first cell projects the backbone stages to `channels`, with separate projections for the
    bottom-up path (as EfficientDet does). `p5_fusion="source"` is the source's P5 output node
    (net.py:488-491): three fusion weights, but only w0 * P5_in + w1 * down(P4_out) is summed and w2
    appears only in the normaliser, so the two terms add up to less than 1 by relu(w2) / sum.
    `p5_fusion="three"` (this project's earlier choice) also adds w2 * P5's top-down node, which at the
    top level is the P5 input itself.
    """

    def __init__(self, channels: int, in_channels: tuple[int, int, int] | None = None,
                 downsample: str = "same", p5_fusion: str = "source") -> None:
        super().__init__()
        if downsample not in DOWNSAMPLES:
            raise ValueError(f"unknown BiFPN downsampling {downsample!r}; choose one of {DOWNSAMPLES}")
        if p5_fusion not in P5_FUSIONS:
            raise ValueError(f"unknown BiFPN P5 fusion {p5_fusion!r}; choose one of {P5_FUSIONS}")
        self.first = in_channels is not None
        self.downsample = max_pool_same if downsample == "same" else _max_pool_pad1
        self.p5_fusion = p5_fusion
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
        p4_out = self.conv_p4_out(self.fuse_p4_out([p4_skip, p4_td, self.downsample(p3_out)]))
        p5_terms = [p5_skip, self.downsample(p4_out)] if self.p5_fusion == "source" else \
            [p5_skip, p5, self.downsample(p4_out)]
        p5_out = self.conv_p5_out(self.fuse_p5_out(p5_terms))
        return [p3_out, p4_out, p5_out]


class BiFPN(nn.Module):
    """`repeats` stacked cells; 84,010 parameters at 52 channels and 3 repeats."""

    def __init__(self, in_channels: tuple[int, int, int], channels: int, repeats: int = 3,
                 downsample: str = "same", p5_fusion: str = "source") -> None:
        super().__init__()
        cells = [BiFPNCell(channels, in_channels if i == 0 else None, downsample, p5_fusion) for i in range(repeats)]
        self.cells = nn.Sequential(*cells)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.cells(feats)
