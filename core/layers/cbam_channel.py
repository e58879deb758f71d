"""CBAM channel gate (Woo et al., ECCV 2018): a shared MLP over avg- and max-pooled channels."""

from __future__ import annotations

import torch
from torch import nn


class CbamChannelGate(nn.Module):
    """Returns the channel mask sigmoid(MLP(avg) + MLP(max)) with shape (B, C, 1, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return torch.sigmoid(logits)[:, :, None, None]
