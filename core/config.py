"""Frozen model configurations and the registry of variant facts.

`MODEL_CONFIGS` is the one place a variant is described: how to build it (attention type and its
settings, neck, channels, anchors) and how to present it (display name, one-line description, plot colour,
published reference numbers). Its order is the display order of every table, legend and page.
Adding a variant means adding an entry here and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

_T = TypeVar("_T")


@dataclass(frozen=True)
class AnchorConfig:
    """RetinaFace-mobilenet0.25 anchors: two square anchors per location on strides 8/16/32."""

    min_sizes: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    clip: bool = False


@dataclass(frozen=True)
class PublishedResult:
    """Numbers a paper or reference repository reports for a variant (WIDERFace val, AP in percent).

    Latency is on the source's own hardware, so it is never compared with a measurement made here.
    """

    easy: float
    medium: float
    hard: float
    mAP: float
    params: int | None
    latency_ms: float | None
    source: str


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a detector (embedded in every checkpoint), plus how the variant is
    presented (name, description, colour, published numbers).

    `neck` is "bifpn" (FeatherFace: `bifpn_repeats` cells) or "fpn" (RetinaFace); `deformable_ssh`
    picks DCNv2 or plain 3x3 convs in the SSH context modules; `shuffle_groups=1` means no shuffle.

    The defaults compute the seed source's function (fokouarnaud/FeatherFace@f023145; README "Faithful
    to the source"). `LEGACY_BUILD` holds this project's earlier choices, kept as options: TF-"same"
    downsampling or "pad1", the source's two-term P5 fusion or "three", DCN modulation 2*sigmoid or
    1*sigmoid, channel_shuffle2 or ShuffleNet's "shufflenet" order, CBAM's [max; mean] pooling or
    [mean; max].
    """

    name: str
    display_name: str
    attention: str
    description: str = ""
    color: str = "#444444"
    compared: bool = True  # one of the attention designs the study compares (False: ablation, baseline)
    published: PublishedResult | None = None
    # attention settings, passed to create_attn as timm passes attn_kwargs
    attn_reduction: int = 16  # CBAM channel MLP: C -> C / reduction -> C
    attn_kernel_size: int = 7  # spatial gate conv
    attn_spatial_bn: bool = False  # BatchNorm after the spatial conv (CBAM's original gate has one)
    attn_spatial_pool_order: str = "mean_max"  # the spatial conv's inputs: [mean; max] (SAM) or "max_mean" (CBAM)
    backbone_channels: tuple[int, int, int] = (64, 128, 256)
    neck: str = "bifpn"
    neck_channels: int = 52
    bifpn_repeats: int = 3
    deformable_ssh: bool = True
    num_anchors: int = 2
    shuffle_groups: int = 2
    shuffle_layout: str = "channel_shuffle2"  # the source's order; "shufflenet" = ShuffleNet's (the inverse)
    bifpn_downsample: str = "same"  # TF-"same" 3x3/2 max pool (zero pad right/bottom); "pad1" = symmetric pad 1
    bifpn_p5_fusion: str = "source"  # w0*P5_in + w1*down(P4_out), w2 only normalises; "three" adds w2*P5_td
    dcn_mask_scale: float = 2.0  # DCN modulation = scale * sigmoid(logits): 2 as the source, 1 as DCNv2
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    image_size: int = 640
    bgr_mean: tuple[float, float, float] = (104.0, 117.0, 123.0)

    @property
    def attn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `create_attn` for this variant."""
        return {"reduction": self.attn_reduction, "kernel_size": self.attn_kernel_size,
                "spatial_bn": self.attn_spatial_bn, "spatial_pool_order": self.attn_spatial_pool_order}


FEATHERFACE_PAPER = ("FeatherFace: Robust and Lightweight Face Detection via Optimal Feature Integration, "
                     "Electronics 2025, 14(3), 517, doi:10.3390/electronics14030517; latency on the source's hardware")

MODEL_CONFIGS: dict[str, ModelConfig] = {
    "cbam": ModelConfig(
        name="cbam", display_name="CBAM baseline", attention="cbam", attn_spatial_bn=True,
        attn_spatial_pool_order="max_mean",
        description="CBAM: channel MLP (r=16), then 7x7 spatial gate (sequential)", color="#1f77b4",
        published=PublishedResult(easy=92.7, medium=90.7, hard=78.3, mAP=87.2, params=488664, latency_ms=4.5,
                                  source=FEATHERFACE_PAPER),
    ),
    "eca_cbam": ModelConfig(
        name="eca_cbam", display_name="ECA-CBAM sequential", attention="eca_cbam",
        description="ECA channel gate (1-D conv, k from C), then SAM spatial gate on the refined map (sequential)",
        color="#ff7f0e",
        published=PublishedResult(
            easy=85.8, medium=83.9, hard=78.3, mAP=82.7, params=476345, latency_ms=4.1,
            source="FeatherFace ECA-CBAM sequential reference result; latency on the source's hardware"),
    ),
    "eca_cbam_parallel": ModelConfig(
        name="eca_cbam_parallel", display_name="ECA-CBAM parallel", attention="eca_cbam_parallel",
        description="ECA and SAM side by side from the same input, fused into one hybrid mask (parallel)",
        color="#2ca02c",
    ),
    "none": ModelConfig(
        name="none", display_name="No attention (ablation)", attention="none", compared=False,
        description="ablation: no attention (identity at the six taps)", color="#7f7f7f",
    ),
    # RetinaFace-mobilenet0.25 (Deng et al. 2020; Pytorch_Retinaface cfg_mnet): the baseline FeatherFace
    # builds on. 426,608 parameters at 640x640.
    "retinaface_mnet": ModelConfig(
        name="retinaface_mnet", display_name="RetinaFace-mnet0.25 (baseline)", attention="none", neck="fpn",
        neck_channels=64, deformable_ssh=False, shuffle_groups=1, compared=False, color="#9467bd",
        description="RetinaFace-mobilenet0.25 baseline: FPN (64 ch) + plain SSH, no attention",
        published=PublishedResult(
            easy=90.70, medium=88.16, hard=73.82, mAP=84.23, params=426608, latency_ms=None,
            source="RetinaFace-mobilenet0.25, WIDERFace val at original image scale, single scale: README of "
                   "github.com/biubug6/Pytorch_Retinaface (table 'Pytorch (original image scale)')"),
    ),
}

# Roles of the variants in the study (hypotheses, comparison pairs, targets): the design under test and
# the two it is compared with.
PARALLEL, SEQUENTIAL, CBAM = "eca_cbam_parallel", "eca_cbam", "cbam"
TARGET_MODEL = PARALLEL  # the design the project targets (TARGETS below) are set for
# What this project aims for with the target design (WIDERFace val AP, percent): the registry is its only home.
TARGETS: dict[str, float] = {"easy": 94.5, "medium": 92.5, "hard": 80.5, "mAP": 89.2}
BASELINE_MODEL = "retinaface_mnet"  # the published detector FeatherFace builds on, timed beside the study
ABLATION = "none"  # the same detector without attention: what attention costs is measured against it
MODEL_ORDER: tuple[str, ...] = tuple(MODEL_CONFIGS)
COMPARED_MODELS: tuple[str, ...] = tuple(name for name, cfg in MODEL_CONFIGS.items() if cfg.compared)
UNKNOWN_COLOR = "#444444"


def _lookup(table: Mapping[str, _T], name: str, kind: str) -> _T:
    """table[name], or a KeyError that lists the valid names (a typo on a CLI says what would work)."""
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; choose one of {sorted(table)}") from None


def get_config(name: str) -> ModelConfig:
    """Look a variant up by name, failing with the list of valid names."""
    return _lookup(MODEL_CONFIGS, name, "model")


def display_name(model: str) -> str:
    """Human name of a variant ("ECA-CBAM parallel"); unknown names are shown as given."""
    cfg = MODEL_CONFIGS.get(model)
    return cfg.display_name if cfg else str(model)


def model_color(model: str) -> str:
    """Plot colour of a variant (grey for names not in the registry)."""
    cfg = MODEL_CONFIGS.get(model)
    return cfg.color if cfg else UNKNOWN_COLOR


def model_rank(model: str) -> int:
    """Position in the display order; unknown names sort last."""
    return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)


_PRESENTATION = ("display_name", "description", "color", "compared", "published")
BUILD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ModelConfig) if f.name not in _PRESENTATION)
"""The fields that decide the network a config builds (everything but how it is presented)."""
_TUPLES = ("backbone_channels", "bgr_mean")
# Build settings added when the variants were made to compute the source's function, with the value every
# checkpoint written before then was trained with: such a checkpoint rebuilds the network it learned.
LEGACY_BUILD: dict[str, Any] = {"attn_spatial_pool_order": "mean_max", "shuffle_layout": "shufflenet",
                                "bifpn_downsample": "pad1", "bifpn_p5_fusion": "three", "dcn_mask_scale": 1.0}


def config_from_dict(data: dict) -> ModelConfig:
    """Rebuild a config from its `dataclasses.asdict` form (as stored in checkpoints).

    For a registered name, presentation facts come from the registry and build settings a checkpoint
    predates (e.g. `attn_spatial_bn`) from its entry, except those of `LEGACY_BUILD`, which take the
    value the checkpoint was trained with: older checkpoints rebuild the same network.
    Keys this version does not know are ignored.
    """
    anchors = data.get("anchors", {})
    anchor_cfg = AnchorConfig(
        min_sizes=tuple(tuple(int(v) for v in pair) for pair in anchors.get("min_sizes", AnchorConfig.min_sizes)),
        steps=tuple(int(s) for s in anchors.get("steps", AnchorConfig.steps)),
        variances=tuple(float(v) for v in anchors.get("variances", AnchorConfig.variances)),
        clip=bool(anchors.get("clip", False)),
    )
    build = {k: (tuple(v) if k in _TUPLES else v) for k, v in data.items() if k in BUILD_FIELDS and k != "anchors"}
    build.update({k: v for k, v in LEGACY_BUILD.items() if k not in data})
    base = MODEL_CONFIGS.get(str(data.get("name")))
    if base is not None:
        return replace(base, anchors=anchor_cfg, **build)
    name = str(build.get("name", "?"))
    return ModelConfig(anchors=anchor_cfg, display_name=str(data.get("display_name") or name), **build)


def build_settings(cfg: ModelConfig) -> dict[str, Any]:
    """`cfg`'s `BUILD_FIELDS`: what a fact derived from the built model, such as its parameter count, depends on."""
    return {name: getattr(cfg, name) for name in BUILD_FIELDS}


# Settings both references share, written once: their data/config.py (batch, size, LR schedule) and their
# MultiBoxLoss(num_classes, 0.35, True, 0, True, 7, 0.35, False) call (match IoU, hard negatives per positive).
NEG_POS = 7
MATCH_IOU = 0.35
# FeatherFace's WIDERFace test caps (boxes into NMS, boxes kept after it); RetinaFace's test script has none (0).
TEST_TOP_K = 5000
TEST_KEEP_TOP_K = 750


