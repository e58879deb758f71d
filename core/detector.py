"""The detector: one class for every attention variant (chosen by `ModelConfig.attention`) and for the
RetinaFace-mnet0.25 baseline (FPN neck and plain SSH, chosen by `ModelConfig.neck` / `deformable_ssh`)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from core.boxes.anchors import generate_anchors
from core.boxes.postprocess import Detections, NmsMethod
from core.config import TEST_KEEP_TOP_K, TEST_TOP_K, ModelConfig
from core.layers.attention import MaskedAttention
from core.layers.create_attn import create_attn
from core.nets.backbone import MobileNetV1
from core.nets.bifpn import BiFPN
from core.nets.fpn import FPN
from core.nets.heads import DetectionHead
from core.nets.ssh import SSH
from core.predictor import Forward, Heatmaps, MaskCapture, Postprocess, Predictor, Preprocess

ANCHOR_CACHE_SIZE = 32  # input sizes whose anchors a model keeps (<= ~1 MB each at WIDER sizes)

STAGES: tuple[str, ...] = ("stage1", "stage2", "stage3")
LEVELS: tuple[str, ...] = ("P3", "P4", "P5")
NECKS: tuple[str, ...] = ("bifpn", "fpn")

MASK_GROUPS: dict[str, str] = {**dict.fromkeys(STAGES, "backbone"), **dict.fromkeys(LEVELS, "bifpn")}


class AttentionUnavailableError(RuntimeError):
    """Raised when masks are asked of a model built without attention ("none", "retinaface_mnet")."""


class FeatherFace(nn.Module):
    """MobileNetV1-0.25 -> attention -> BiFPN (52 ch, x3) -> attention -> SSH(DCN)+shuffle -> 1x1 heads.

    With `cfg.neck == "fpn"` (the RetinaFace baseline) the neck is `self.fpn` instead of `self.bifpn`
    and the attention taps are identities. `forward` returns raw (box offsets (B,A,4), class logits
    (B,A,2), landmark offsets (B,A,10)).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = MobileNetV1()
        c = cfg.neck_channels
        self.backbone_attention = nn.ModuleList(create_attn(cfg.attention, ch, **cfg.attn_kwargs)
                                                 for ch in cfg.backbone_channels)
        if cfg.neck == "bifpn":
            self.bifpn = BiFPN(cfg.backbone_channels, c, cfg.bifpn_repeats, cfg.bifpn_downsample, cfg.bifpn_p5_fusion)
        elif cfg.neck == "fpn":
            self.fpn = FPN(cfg.backbone_channels, c)
        else:
            raise ValueError(f"unknown neck {cfg.neck!r}; choose one of {list(NECKS)}")
        self.bifpn_attention = nn.ModuleList(create_attn(cfg.attention, c, **cfg.attn_kwargs) for _ in LEVELS)
        self.ssh = nn.ModuleList(
            SSH(c, c, cfg.shuffle_groups, cfg.deformable_ssh, cfg.dcn_mask_scale, cfg.shuffle_layout) for _ in LEVELS)
        self.heads = DetectionHead(c, cfg.num_anchors, len(LEVELS))
        self._anchor_cache: OrderedDict[tuple[int, int, str], torch.Tensor] = OrderedDict()

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def has_attention(self) -> bool:
        return self.cfg.attention != "none"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stages = [attn(f) for attn, f in zip(self.backbone_attention, self.body(x), strict=True)]
        levels = [attn(f) for attn, f in zip(self.bifpn_attention, self.neck(stages), strict=True)]
        return self.heads([ssh(f) for ssh, f in zip(self.ssh, levels, strict=True)])

    @property
    def neck(self) -> nn.Module:
        """The BiFPN or FPN module, whichever the config asks for."""
        return getattr(self, self.cfg.neck)

    def parts(self) -> dict[str, list[nn.Module]]:
        """Top-level modules of each part, the grouping `get_parameter_count` reports (the neck the
        model does not have is an empty part)."""
        return {
            "backbone": [self.body],
            "attention": [self.backbone_attention, self.bifpn_attention],
            "bifpn": [self.bifpn] if self.cfg.neck == "bifpn" else [],
            "fpn": [self.fpn] if self.cfg.neck == "fpn" else [],
            "ssh": [self.ssh],
            "heads": [self.heads],
        }

    def get_parameter_count(self) -> dict[str, int]:
        """{"total", "trainable", "backbone", "attention", "bifpn", "fpn", "ssh", "heads"} parameter counts.

        Also "attention_backbone" and "attention_bifpn", the two halves of "attention", and "neck"
        (= "bifpn" + "fpn", one of them 0).
        """
        counts = {part: sum(p.numel() for m in mods for p in m.parameters()) for part, mods in self.parts().items()}
        counts["attention_backbone"] = sum(p.numel() for p in self.backbone_attention.parameters())
        counts["attention_bifpn"] = sum(p.numel() for p in self.bifpn_attention.parameters())
        counts["neck"] = counts["bifpn"] + counts["fpn"]
        counts["total"] = sum(p.numel() for p in self.parameters())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def attention_blocks(self) -> dict[str, MaskedAttention]:
        """Named attention blocks: stage1..stage3 then P3..P5 (empty for the "none" ablation)."""
        named = zip(STAGES + LEVELS, [*self.backbone_attention, *self.bifpn_attention], strict=True)
        return {name: block for name, block in named if isinstance(block, MaskedAttention)}

    def anchors_for(self, image_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Anchors for an input size, cached on ``device`` (no copy per call) for the ANCHOR_CACHE_SIZE sizes
        used last: the dashboard and the predictor reuse sizes, and WIDER val has hundreds of them."""
        key = (int(image_hw[0]), int(image_hw[1]), str(torch.device(device)))
        if key in self._anchor_cache:
            self._anchor_cache.move_to_end(key)
        else:
            self._anchor_cache[key] = generate_anchors(key[:2], self.cfg.anchors).to(device)
            while len(self._anchor_cache) > ANCHOR_CACHE_SIZE:
                self._anchor_cache.popitem(last=False)
        return self._anchor_cache[key]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare_image(self, image: object) -> tuple[np.ndarray, torch.Tensor]:
        """Validate/convert a user image (RGB) and build the model input on the model's device."""
        rgbs, x = self.preprocess([image])
        return rgbs[0], x

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.cfg.bgr_mean, self.device)

    def predictor(
        self, conf_thresh: float = 0.5, nms_thresh: float = 0.4, *, top_k: int = TEST_TOP_K,
        keep_top_k: int = TEST_KEEP_TOP_K, nms_method: NmsMethod = "pixel", forward: Forward | None = None,
    ) -> Predictor:
        """This model's pre- and post-processing around `forward` (default: the model itself). Any callable
        with the model's call fits, e.g. an ONNX Runtime or OpenVINO session made from it (eval's deploy code):
        pre- and post-processing stay the same code."""
        post = Postprocess(self.anchors_for, self.cfg.anchors.variances, conf_thresh, nms_thresh, top_k, keep_top_k,
                           nms_method)
        return Predictor(self.preprocess, forward if forward is not None else self, post)

    @torch.inference_mode()
    def detect(
        self, image: object, conf_thresh: float = 0.5, nms_thresh: float = 0.4, *, top_k: int = TEST_TOP_K,
        keep_top_k: int = TEST_KEEP_TOP_K, nms_method: NmsMethod = "pixel", forward: Forward | None = None,
    ) -> Detections:
        """RGB image (numpy HxWx3 uint8, any size, or tensor) -> boxes, scores and 5 landmarks in pixels.

        NMS uses RetinaFace's +1 pixel rule unless `nms_method="torchvision"`; `top_k` / `keep_top_k`
        cap the boxes before / after NMS (0 = no cap), see `core.boxes.postprocess.postprocess`. `forward`
        replaces the PyTorch forward pass (see `predictor`).
        """
        return self.inspect(image, conf_thresh, nms_thresh, with_masks=False, top_k=top_k, keep_top_k=keep_top_k,
                            nms_method=nms_method, forward=forward)[0]

    def get_attention_heatmaps(self, image: object) -> Heatmaps:
        """Masks captured from the real forward pass on `image` (RGB, any size, or a tensor).

        Returns {"backbone": {"stage1".."stage3": m}, "bifpn": {"P3".."P5": m}} where each m is
        {"channel_mask": (C,), "spatial_mask": (H, W), "hybrid_mask": (H, W)} float32 in [0, 1] at
        the feature resolution. "hybrid_mask" is the C x H x W mask the block actually multiplied its
        input by (M_c * M_s), averaged over channels. For sequential blocks (CBAM, ECA-CBAM) the
        spatial mask is computed from the channel-refined features, as in the forward pass.
        Raises `AttentionUnavailableError` for models without attention ("none", "retinaface_mnet").
        """
        return self.inspect(image, with_masks=True)[1]

    def mask_capture(self) -> MaskCapture:
        """A forward callable that also keeps the masks of every attention tap (`MaskCapture.heatmaps`)."""
        if not self.has_attention:
            what = "the no-attention ablation" if self.cfg.neck == "bifpn" else "a baseline without attention"
            raise AttentionUnavailableError(f"model {self.name!r} is {what}: it has no channel/spatial/hybrid masks")
        return MaskCapture(self, self.attention_blocks())

    @torch.inference_mode()
    def inspect(
        self, image: object, conf_thresh: float = 0.5, nms_thresh: float = 0.4, with_masks: bool = True, *,
        top_k: int = TEST_TOP_K, keep_top_k: int = TEST_KEEP_TOP_K, nms_method: NmsMethod = "pixel",
        forward: Forward | None = None,
    ) -> tuple[Detections, Heatmaps]:
        """Detections and (with `with_masks`) the attention masks of that same forward pass, in eval mode.

        Masks exist only in the PyTorch forward pass (hooks capture them), so `with_masks` takes no `forward`.
        """
        if with_masks and forward is not None:
            raise ValueError("attention masks come from the PyTorch forward pass; pass no forward with with_masks")
        capture = self.mask_capture() if with_masks else None
        predictor = self.predictor(conf_thresh, nms_thresh, top_k=top_k, keep_top_k=keep_top_k,
                                   nms_method=nms_method, forward=capture or forward)
        was_training = self.training
        self.eval()
        try:
            dets = predictor(image)
        finally:
            self.train(was_training)
        return dets, (capture.heatmaps(MASK_GROUPS) if capture else {})

