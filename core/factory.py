"""`build_model(name)`: the only way the rest of the project creates a detector."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from core.backbone_weights import load_backbone_weights
from core.config import ModelConfig, get_config
from core.detector import FeatherFace


def build_model(
    name_or_cfg: str | ModelConfig, device: str | torch.device | None = None,
    backbone_weights: Path | str | None = None,
) -> FeatherFace:
    """Build a variant named in `core.config.MODEL_CONFIGS` (or from a config), randomly initialised or with
    the body from an ImageNet MobileNetV1-0.25 file in RetinaFace's format (`core.backbone_weights`)."""
    cfg = get_config(name_or_cfg) if isinstance(name_or_cfg, str) else name_or_cfg
    model = FeatherFace(cfg)
    if backbone_weights is not None:
        load_backbone_weights(model.body, backbone_weights)
    return model.to(device) if device is not None else model


def parameter_counts(name: str) -> dict[str, int]:
    """`get_parameter_count()` of a variant without building real weights (cheap enough for the
    dashboard's first page, which shows all four)."""
    return dict(_meta_parameter_counts(name))


@functools.cache
def _meta_parameter_counts(name: str) -> dict[str, int]:
    with torch.device("meta"):
        return build_model(name).get_parameter_count()
