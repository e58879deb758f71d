"""ECA channel gate (Wang et al., CVPR 2020): a 1-D conv across pooled channels, no MLP bottleneck."""

from __future__ import annotations

import math

import torch
from torch import nn


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """Adaptive kernel: t = int((log2(C) + b) / gamma), made odd (3 for 52/64 channels, 5 for 128/256)."""
    t = int((math.log2(channels) + b) / gamma)
    return t if t % 2 == 1 else t + 1


class EcaGate(nn.Module):
    """Returns the channel mask M_c = sigmoid(Conv1D_k(GAP(X))) with shape (B, C, 1, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.kernel_size = eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)
        return torch.sigmoid(self.conv(pooled)).transpose(1, 2).unsqueeze(-1)
