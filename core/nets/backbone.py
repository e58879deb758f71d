"""MobileNetV1-0.25 body of RetinaFace-mobilenet0.25: three stages at strides 8/16/32."""

from __future__ import annotations

import torch
from torch import nn

from core.layers.conv import conv_bn, conv_dw


class MobileNetV1(nn.Module):
    """Outputs stage1 (64 ch, /8), stage2 (128 ch, /16), stage3 (256 ch, /32); 213,072 parameters."""

    out_channels: tuple[int, int, int] = (64, 128, 256)

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        return [s1, s2, s3]


class MobileNetV1Classifier(MobileNetV1):
    """The body plus global average pooling and a linear classifier, for ImageNet-style pretraining.

    Module names match RetinaFace's `models/net.py` MobileNetV1 (`stage1..3`, `avg`, `fc`), so its
    state dict, saved under a `module.` prefix, is exactly the reference's pretrained-backbone format.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.out_channels[-1], num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avg(self.forward(x)[-1]).flatten(1))
