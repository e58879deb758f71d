"""One factory picks the attention block by name, so the variants are config entries, not classes.

As timm's `create_attn(attn_type, channels, **kwargs)`: the settings come from the model config
(`ModelConfig.attn_kwargs`), not from constants fixed here.
"""

from __future__ import annotations

from torch import nn

from core.layers.attention import ParallelAttention, SequentialAttention
from core.layers.cbam_channel import CbamChannelGate
from core.layers.eca import EcaGate
from core.layers.spatial import SpatialGate

ATTENTION_TYPES: tuple[str, ...] = ("cbam", "eca_cbam", "eca_cbam_parallel", "none")


def create_attn(name: str, channels: int, reduction: int = 16, kernel_size: int = 7,
                spatial_bn: bool = False, spatial_pool_order: str = "mean_max") -> nn.Module:
    """Build the attention block `name` for a feature map with `channels` channels.

    `reduction` is CBAM's channel-MLP ratio, `kernel_size` the spatial gate's conv size,
    `spatial_bn` whether a BatchNorm follows that conv and `spatial_pool_order` the order of its
    two pooled input channels.
    """
    def spatial() -> SpatialGate:
        return SpatialGate(kernel_size, spatial_bn, spatial_pool_order)

    if name == "cbam":
        return SequentialAttention(CbamChannelGate(channels, reduction), spatial())
    if name == "eca_cbam":
        return SequentialAttention(EcaGate(channels), spatial())
    if name == "eca_cbam_parallel":
        return ParallelAttention(EcaGate(channels), spatial())
    if name == "none":
        return nn.Identity()
    raise KeyError(f"unknown attention {name!r}; choose one of {sorted(ATTENTION_TYPES)}")
