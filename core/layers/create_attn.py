"""One factory picks the attention block by name, so the variants are config entries, not classes."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from core.layers.attention import ParallelAttention, SequentialAttention
from core.layers.cbam import CbamChannelGate
from core.layers.eca import EcaGate
from core.layers.spatial import SpatialGate

_ATTENTION: dict[str, Callable[[int], nn.Module]] = {
    "cbam": lambda c: SequentialAttention(CbamChannelGate(c), SpatialGate(batch_norm=True)),
    "eca_cbam": lambda c: SequentialAttention(EcaGate(c), SpatialGate()),
    "eca_cbam_parallel": lambda c: ParallelAttention(EcaGate(c), SpatialGate()),
    "none": lambda c: nn.Identity(),
}

ATTENTION_NAMES: tuple[str, ...] = tuple(_ATTENTION)


def create_attn(name: str, channels: int) -> nn.Module:
    """Build the attention block `name` for a feature map with `channels` channels."""
    try:
        return _ATTENTION[name](channels)
    except KeyError:
        raise KeyError(f"unknown attention {name!r}; choose one of {sorted(_ATTENTION)}") from None
