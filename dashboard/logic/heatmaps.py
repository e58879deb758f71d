"""What the Heatmaps page shows, computed without streamlit so it is unit-tested: the upload's path (read, fitted,
one forward pass per column, the images each column draws), level selection
(one level or all six), strongest channels, parallel-minus-sequential difference, diverging overlay,
detections drawn on the image.

Every mask comes from `FeatherFace.inspect` (one forward pass per model and image); nothing here
re-runs a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.boxes.postprocess import Detections
from core.config import COMPARED_MODELS, MODEL_CONFIGS, MODEL_ORDER, display_name
from core.detector import Heatmaps
from core.io.image_io import decode_upload
from dashboard.logic.weights import WeightsOption
from eval.attention.drawing import (
    LEVEL_CHOICES,
    MAX_DRAWN,
    diverging_overlay,
    draw_detections,
    filter_detections,
    fit_image,
    hybrid_difference,
    level_masks,
    scale_detections,
    top_channels,
)
from eval.attention.overlay import overlay_mask


def models_without_masks(models: tuple[str, ...] = MODEL_ORDER) -> list[str]:
    """Registered variants with no attention blocks (their `get_attention_heatmaps` raises
    `AttentionUnavailableError`): the Heatmaps page skips them."""
    return [m for m in models if MODEL_CONFIGS[m].attention == "none"]


def skipped_models_note(models: tuple[str, ...] = MODEL_ORDER) -> str:
    """The Heatmaps page's note on the variants it leaves out, and why."""
    names = [f"{display_name(m)} (`{m}`)" for m in models_without_masks(models)]
    if not names:
        return ""
    return (f"Not shown by default: {', '.join(names)}: no attention blocks, so there is no channel, spatial or "
            "hybrid mask to draw. Pick their weights in a column to see their detections; their latency is on the "
            "Latency page.")


def has_masks(model: str) -> bool:
    """Whether a variant has attention blocks, hence masks to draw."""
    return MODEL_CONFIGS[model].attention != "none"


def column_models(selection: Mapping[str, WeightsOption], models: Iterable[str] = COMPARED_MODELS) -> list[str]:
    """The Heatmaps columns' default variants: those whose chosen weights learned real faces first (so the page
    opens on a detector trained on WIDER FACE when there is one), otherwise in registry order."""
    return sorted((m for m in models if m in selection), key=lambda m: not selection[m].real)


def column_choices(options: Mapping[str, list[WeightsOption]]) -> list[WeightsOption]:
    """What one Heatmaps column may show: every weights option of every variant, those that learned real faces
    first, then each variant's own list (demo, checkpoints, random init) in registry order."""
    ordered = [options[m] for m in MODEL_ORDER if m in options]
    real = [o for opts in ordered for o in opts if o.real]
    return real + [o for opts in ordered for o in opts if not o.real]


def column_choice_label(option: WeightsOption) -> str:
    return f"{display_name(option.model)}: {option.label}"


def sync_column(stored: str | None, synced: str | None, default: str, valid: Iterable[str]) -> tuple[str, str]:
    """(value, sidebar key it follows) for a column picker: the sidebar's choice for the column's variant when
    that choice changed since the column last followed it or the stored pick is gone; else the user's own pick."""
    if stored is None or stored not in set(valid) or synced != default:
        return default, default
    return stored, default


@dataclass(frozen=True)
class EpochSteps:
    """The checkpoints of one run a column can step through, by epoch, and the epoch the column opens on."""

    epochs: tuple[int, ...]
    options: dict[int, WeightsOption]
    start: int

    def option(self, epoch: int) -> WeightsOption:
        """The checkpoint of `epoch`, or of the nearest epoch below it (the first step if none)."""
        below = [e for e in self.epochs if e <= epoch]
        return self.options[below[-1] if below else self.epochs[0]]


def epoch_steps(option: WeightsOption, steps: list[WeightsOption]) -> EpochSteps | None:
    """The stepper for `option` given its run's checkpoints (`dashboard.logic.weights.run_steps`); None when there is
    nothing to step through. It opens on the chosen checkpoint's epoch (the run's last when it has none)."""
    by_epoch = {s.epochs: s for s in steps if s.epochs is not None}
    if len(by_epoch) < 2:
        return None
    epochs = tuple(sorted(by_epoch))
    start = option.epochs if option.epochs in by_epoch else epochs[-1]
    return EpochSteps(epochs=epochs, options=by_epoch, start=start)


def image_digest(rgb: np.ndarray) -> str:
    """Content hash of an image (shape included): the cache key for its forward passes."""
    h = hashlib.sha1(str(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


# The upload's path through the page: page -> read_image / analysis_image (here) -> run_column (the model's one
# forward pass) -> column_view / difference_view (here) -> page. The page only places what these return.
FORWARD_CONF = 0.2  # one low-threshold pass; the confidence slider filters afterwards
MAX_ANALYSIS_SIDE = 1600  # bigger images are downscaled before the forward pass (CPU time)
MAX_VIEW_SIDE = 720  # overlays are drawn at this size at most
NMS_THRESH = 0.4
__all__ = ["LEVEL_CHOICES", "MAX_DRAWN"]  # the page's level list and box cap, as drawing defines them


def read_image(data: bytes, name: str) -> np.ndarray:
    """An upload (or a bundled sample's bytes) as RGB uint8; `ImageInputError` with the reason otherwise."""
    return decode_upload(data, name)


def analysis_image(rgb_full: np.ndarray) -> tuple[np.ndarray, float]:
    """The image the models see, at most MAX_ANALYSIS_SIDE px on its long side: (rgb, scale)."""
    return fit_image(rgb_full, MAX_ANALYSIS_SIDE)


def view_image(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The image the overlays are drawn on, at most MAX_VIEW_SIDE px: (rgb, scale from the analysed image)."""
    return fit_image(rgb, MAX_VIEW_SIDE)


def run_column(model, rgb: np.ndarray, with_masks: bool) -> tuple[Detections, Heatmaps | None]:
    """One column's single forward pass: detections at FORWARD_CONF and, for a variant with attention, the masks
    of that same pass (None without attention)."""
    if not with_masks:
        return model.detect(rgb, conf_thresh=FORWARD_CONF, nms_thresh=NMS_THRESH), None
    return model.inspect(rgb, conf_thresh=FORWARD_CONF, nms_thresh=NMS_THRESH, with_masks=True)


@dataclass(frozen=True)
class ColumnView:
    """What one column draws: the detections image, and for a model with masks its overlays and channels."""

    detections: np.ndarray
    shown: int  # detections at or above the threshold
    spatial: np.ndarray | None = None
    hybrid: np.ndarray | None = None
    spatial_range: tuple[float, float] = (0.0, 0.0)
    hybrid_range: tuple[float, float] = (0.0, 0.0)
    channels: pd.DataFrame | None = None


def column_view(view: np.ndarray, view_scale: float, dets: Detections, maps: Heatmaps | None, *, conf: float,
                level: str, alpha: float, colormap: str, normalize: bool, top_k: int) -> ColumnView:
    """The images and channel table of one column at the page's settings (nothing re-runs the model)."""
    shown = filter_detections(dets, conf)
    drawn = draw_detections(view, scale_detections(shown, view_scale))
    if maps is None:
        return ColumnView(drawn, len(shown))
    masks = level_masks(maps, level)
    chans = top_channels(maps, level, top_k)
    chans["label"] = chans["label"] if level == "all" else chans["channel"].map(lambda c: f"#{c}")
    spatial, hybrid = masks["spatial"], masks["hybrid"]
    return ColumnView(drawn, len(shown), overlay_mask(view, spatial, alpha, colormap, normalize),
                      overlay_mask(view, hybrid, alpha, colormap, normalize),
                      (float(spatial.min()), float(spatial.max())), (float(hybrid.min()), float(hybrid.max())), chans)


def difference_view(view: np.ndarray, parallel: Heatmaps, sequential: Heatmaps, level: str,
                    alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Parallel minus sequential hybrid mask: (overlay on the view, the difference, its largest magnitude)."""
    diff = hybrid_difference(parallel, sequential, level)
    return diverging_overlay(view, diff, alpha=max(alpha, 0.3)), diff, float(np.abs(diff).max())
