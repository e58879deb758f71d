"""Frozen model configurations: the four FeatherFace variants differ only by their attention name; the
`retinaface_mnet` baseline is the same detector class with an FPN neck and plain SSH convs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AnchorConfig:
    """RetinaFace-mobilenet0.25 anchors: two square anchors per location on strides 8/16/32."""

    min_sizes: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    clip: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a detector; embedded in every checkpoint.

    `neck` is "bifpn" (FeatherFace: `bifpn_repeats` cells) or "fpn" (RetinaFace); `deformable_ssh`
    picks DCNv2 or plain 3x3 convs in the SSH context modules; `shuffle_groups=1` means no shuffle.
    """

    name: str
    display_name: str
    attention: str
    backbone_channels: tuple[int, int, int] = (64, 128, 256)
    neck: str = "bifpn"
    neck_channels: int = 52
    bifpn_repeats: int = 3
    deformable_ssh: bool = True
    num_anchors: int = 2
    shuffle_groups: int = 2
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    image_size: int = 640
    bgr_mean: tuple[float, float, float] = (104.0, 117.0, 123.0)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "cbam": ModelConfig(name="cbam", display_name="CBAM baseline", attention="cbam"),
    "eca_cbam": ModelConfig(name="eca_cbam", display_name="ECA-CBAM sequential", attention="eca_cbam"),
    "eca_cbam_parallel": ModelConfig(
        name="eca_cbam_parallel", display_name="ECA-CBAM parallel", attention="eca_cbam_parallel"
    ),
    "none": ModelConfig(name="none", display_name="No attention (ablation)", attention="none"),
    # RetinaFace-mobilenet0.25 (Deng et al. 2020; Pytorch_Retinaface cfg_mnet): the baseline FeatherFace
    # builds on. 426,608 parameters at 640x640.
    "retinaface_mnet": ModelConfig(
        name="retinaface_mnet", display_name="RetinaFace-mnet0.25 (baseline)", attention="none", neck="fpn",
        neck_channels=64, deformable_ssh=False, shuffle_groups=1,
    ),
}

COMPARED_MODELS: tuple[str, ...] = ("cbam", "eca_cbam", "eca_cbam_parallel")


def get_config(name: str) -> ModelConfig:
    """Look a variant up by name, failing with the list of valid names."""
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {sorted(MODEL_CONFIGS)}") from None


def display_name(model: str) -> str:
    """Human name of a variant ("ECA-CBAM parallel"); unknown names are shown as given."""
    cfg = MODEL_CONFIGS.get(model)
    return cfg.display_name if cfg else str(model)


def config_from_dict(data: dict) -> ModelConfig:
    """Rebuild a config from its `dataclasses.asdict` form (as stored in checkpoints)."""
    anchors = data.get("anchors", {})
    anchor_cfg = AnchorConfig(
        min_sizes=tuple(tuple(int(v) for v in pair) for pair in anchors.get("min_sizes", AnchorConfig.min_sizes)),
        steps=tuple(int(s) for s in anchors.get("steps", AnchorConfig.steps)),
        variances=tuple(float(v) for v in anchors.get("variances", AnchorConfig.variances)),
        clip=bool(anchors.get("clip", False)),
    )
    plain = {k: v for k, v in data.items() if k != "anchors"}
    for key in ("backbone_channels", "bgr_mean"):
        if key in plain:
            plain[key] = tuple(plain[key])
    return ModelConfig(anchors=anchor_cfg, **plain)
