"""Small conv + batch-norm builders shared by the backbone, the neck and the context modules."""

from __future__ import annotations

from torch import nn


def conv_bn(in_ch: int, out_ch: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """3x3 conv (no bias) + BN + LeakyReLU, as in RetinaFace's MobileNet stem."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(in_ch: int, out_ch: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BN + LeakyReLU (MobileNetV1 block)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn1x1(in_ch: int, out_ch: int, leaky: float = 0.0) -> nn.Sequential:
    """1x1 conv (no bias) + BN + LeakyReLU: RetinaFace's FPN lateral projection."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )
