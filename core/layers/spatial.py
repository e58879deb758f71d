"""Spatial gate shared by CBAM and the ECA-CBAM hybrids: a 7x7 conv over [mean_c(X); max_c(X)]."""

from __future__ import annotations

import torch
from torch import nn


class SpatialGate(nn.Module):
    """Returns the spatial mask M_s with shape (B, 1, H, W).

    CBAM's original gate has a BatchNorm after the conv (2 extra parameters); the SAM used by the
    ECA-CBAM variants has none (98 parameters), as in the published parameter counts.
    """

    def __init__(self, kernel_size: int = 7, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(pooled)))
