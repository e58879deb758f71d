"""A prediction as three parts passed in, as torchvision's detection models compose theirs: pre-processing
(any image -> the model's input tensor), a forward callable, and post-processing (decode + NMS in image pixels).

The forward callable is anything with the detector's call, `(N,3,H,W) tensor -> (loc, conf, landmarks)`: the
PyTorch model, a runtime session made from it (eval's deploy code), or `MaskCapture`, which runs the PyTorch
model with hooks on its attention taps. Core never imports a runtime: whoever holds one passes its forward in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.boxes.postprocess import Detections, NmsMethod, postprocess
from core.config import TEST_KEEP_TOP_K, TEST_TOP_K
from core.io.image_input import rgb_to_model_tensor, to_rgb_uint8

Forward = Callable[[torch.Tensor], Sequence[torch.Tensor]]
AnchorsFor = Callable[[tuple[int, int], torch.device], torch.Tensor]
Heatmaps = dict[str, dict[str, dict[str, np.ndarray]]]
KINDS: tuple[str, ...] = ("channel", "spatial", "hybrid")


@dataclass(frozen=True)
class Preprocess:
    """User images (RGB numpy HxWx3 of any dtype/size, or tensors) -> validated RGB uint8 and the input batch."""

    bgr_mean: tuple[float, float, float]
    device: torch.device

    def __call__(self, images: Sequence[object]) -> tuple[list[np.ndarray], torch.Tensor]:
        rgbs = [to_rgb_uint8(image) for image in images]
        if len({rgb.shape for rgb in rgbs}) != 1:
            raise ValueError(f"one batch needs images of one size, got {sorted({rgb.shape for rgb in rgbs})}")
        batch = torch.cat([rgb_to_model_tensor(rgb, self.bgr_mean) for rgb in rgbs])
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return rgbs, batch.to(self.device, non_blocking=True)


@dataclass(frozen=True)
class Postprocess:
    """Raw outputs (B,A,4), (B,A,2), (B,A,10) of one batch -> `Detections` per image, in input pixels
    (see `core.boxes.postprocess.postprocess` for the thresholds and caps; 0 = no cap)."""

    anchors_for: AnchorsFor
    variances: tuple[float, float]
    conf_thresh: float = 0.5
    nms_thresh: float = 0.4
    top_k: int = TEST_TOP_K
    keep_top_k: int = TEST_KEEP_TOP_K
    nms_method: NmsMethod = "pixel"

    def __call__(self, outputs: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> list[Detections]:
        loc, conf, landm = outputs
        anchors = self.anchors_for(image_hw, loc.device)
        return [postprocess(loc[i], conf[i], landm[i], anchors, image_hw, self.variances, self.conf_thresh,
                            self.nms_thresh, self.top_k, self.keep_top_k, self.nms_method) for i in range(len(loc))]


@dataclass(frozen=True)
class Predictor:
    """pre-processing -> forward -> post-processing; each part can be swapped without touching the others."""

    preprocess: Preprocess
    forward: Forward
    postprocess: Postprocess

    def __call__(self, image: object) -> Detections:
        """One image -> its detections."""
        return self.batch([image])[0]

    def batch(self, images: Sequence[object]) -> list[Detections]:
        """Equal-size images in one forward pass -> their detections, in order."""
        rgbs, x = self.preprocess(images)
        return self.postprocess(self.forward(x), rgbs[0].shape[:2])


class MaskCapture:
    """A forward callable that runs `model` with hooks on its attention taps and keeps the masks of the last call.

    `taps` maps a level name to the block whose `channel_tap` / `spatial_tap` / `hybrid_tap` modules see the
    masks actually multiplied into the features (nothing is recomputed).
    """

    def __init__(self, model: nn.Module, taps: dict[str, nn.Module]) -> None:
        self.model = model
        self.taps = taps
        self.raw: dict[str, dict[str, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        self.raw = {name: {} for name in self.taps}
        handles = [getattr(block, f"{kind}_tap").register_forward_hook(_store(self.raw[name], kind))
                   for name, block in self.taps.items() for kind in KINDS]
        try:
            return self.model(x)
        finally:
            for handle in handles:
                handle.remove()

    def heatmaps(self, groups: dict[str, str], index: int = 0) -> Heatmaps:
        """The masks of image `index` of the last call as numpy: {group: {level: {"channel_mask": (C,),
        "spatial_mask": (H,W), "hybrid_mask": (H,W)}}}, `groups` naming each level's group. The hybrid mask is
        the C x H x W mask the block applied, averaged over channels."""
        out: Heatmaps = {group: {} for group in dict.fromkeys(groups.values())}
        for name, masks in self.raw.items():
            out[groups[name]][name] = {
                "channel_mask": masks["channel"][index, :, 0, 0].float().cpu().numpy(),
                "spatial_mask": masks["spatial"][index, 0].float().cpu().numpy(),
                "hybrid_mask": masks["hybrid"][index].float().mean(dim=0).cpu().numpy(),
            }
        return out


def _store(target: dict[str, torch.Tensor], key: str) -> Callable[..., None]:
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        target[key] = output.detach()

    return hook
