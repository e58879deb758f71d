"""How a channel gate and a spatial gate are combined: sequentially (CBAM order) or in parallel.

Both blocks pass their masks through identity "taps" so forward hooks can capture exactly the
tensors used in the forward pass (see `FeatherFace.get_attention_heatmaps`); no mask is recomputed.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedAttention(nn.Module):
    """Base: holds the two gates and the taps that expose channel, spatial and hybrid masks."""

    def __init__(self, channel_gate: nn.Module, spatial_gate: nn.Module) -> None:
        super().__init__()
        self.channel_gate = channel_gate
        self.spatial_gate = spatial_gate
        self.channel_tap = nn.Identity()
        self.spatial_tap = nn.Identity()
        self.hybrid_tap = nn.Identity()


class SequentialAttention(MaskedAttention):
    """F = X * M_c(X); Y = F * M_s(F). The applied C x H x W mask is M_c * M_s(F)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel_tap(self.channel_gate(x))
        refined = x * channel
        spatial = self.spatial_tap(self.spatial_gate(refined))
        hybrid = self.hybrid_tap(channel * spatial)
        return x * hybrid


class ParallelAttention(MaskedAttention):
    """M_c and M_s both from X, side by side; Y = X * (M_c * M_s). No parameters beyond the gates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel_tap(self.channel_gate(x))
        spatial = self.spatial_tap(self.spatial_gate(x))
        hybrid = self.hybrid_tap(channel * spatial)
        return x * hybrid
