"""Spatial gate shared by CBAM and the ECA-CBAM hybrids: a 7x7 conv over [mean_c(X); max_c(X)]."""

from __future__ import annotations

import torch
from torch import nn

POOL_ORDERS: tuple[str, ...] = ("mean_max", "max_mean")


class SpatialGate(nn.Module):
    """Returns the spatial mask M_s with shape (B, 1, H, W).

    CBAM's original gate has a BatchNorm after the conv (2 extra parameters; eps 1e-5, momentum 0.01 as
    the seed source's BasicConv, models/net.py:31) and pools [max; mean] (its ChannelPool, net.py:90);
    the SAM used by the ECA-CBAM variants has no BN (98 parameters) and pools [mean; max]
    (models/eca_cbam_hybrid.py:121-125). `pool_order` names the order of the conv's two input channels.
    """

    def __init__(self, kernel_size: int = 7, batch_norm: bool = False, pool_order: str = "mean_max") -> None:
        super().__init__()
        if pool_order not in POOL_ORDERS:
            raise ValueError(f"unknown spatial pool order {pool_order!r}; choose one of {POOL_ORDERS}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01) if batch_norm else nn.Identity()
        self.max_first = pool_order == "max_mean"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, peak = x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
        pooled = torch.cat([peak, mean] if self.max_first else [mean, peak], dim=1)
        return torch.sigmoid(self.bn(self.conv(pooled)))
