"""Attention heatmap figure: a 2x4 grid composed with numpy/cv2 (no plotting library needed).

Row 1: the image with its detections, then the stage1-3 hybrid masks; row 2: an info panel (model,
weights, colour scale), then the P3-P5 hybrid masks. Every mask comes from the same single forward
pass as the detections (`FeatherFace.inspect`). PNG bytes are returned for the dashboard's download
button; the CLI writes them atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import MODEL_CONFIGS
from core.detector import LEVELS, STAGES, AttentionUnavailableError, FeatherFace
from core.factory import build_model
from core.io.cli_paths import CliParser, fail, input_file, output_file
from core.io.image_input import ImageInputError
from core.lab.artifacts import atomic_write_bytes
from eval.attention.drawing import draw_detections
from eval.attention.overlay import overlay_mask

PANEL = 320  # panel width and height of the image area, px
TITLE_H = 30
MAX_BOXES = 50
_BG = (255, 255, 255)
_INK = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class FigureError(ValueError):
    """The image cannot be read or the model cannot give a heatmap figure; the message says why."""


def read_image_rgb(path: Path | str) -> np.ndarray:
    path = Path(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if bgr is None:
        raise FigureError(f"{path}: image not found or not readable")
    return np.ascontiguousarray(bgr[..., ::-1])


def _fit(rgb: np.ndarray, size: int = PANEL) -> np.ndarray:
    """Letterbox an image into a size x size white square, keeping its aspect ratio."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), _BG, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    return canvas


def _titled(body: np.ndarray, title: str) -> np.ndarray:
    """Put a title bar above a panel, shrinking the text until it fits."""
    bar = np.full((TITLE_H, body.shape[1], 3), _BG, dtype=np.uint8)
    scale = 0.55
    while scale > 0.3 and cv2.getTextSize(title, _FONT, scale, 1)[0][0] > body.shape[1] - 8:
        scale -= 0.05
    cv2.putText(bar, title, (4, TITLE_H - 10), _FONT, scale, _INK, 1, cv2.LINE_AA)
    return np.vstack([bar, body])



def _info_panel(lines: list[str], colormap: str) -> np.ndarray:
    """Text lines plus a low-to-high colour bar for the mask scale."""
    panel = np.full((PANEL, PANEL, 3), _BG, dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(panel, line, (8, 28 + 24 * i), _FONT, 0.45, _INK, 1, cv2.LINE_AA)
    ramp = np.tile(np.linspace(0, 1, PANEL - 40, dtype=np.float32), (20, 1))
    bar = overlay_mask(np.zeros((20, PANEL - 40, 3), np.uint8), ramp, alpha=1.0, colormap=colormap, normalize=False)
    panel[PANEL - 60:PANEL - 40, 20:PANEL - 20] = bar
    cv2.putText(panel, "low", (20, PANEL - 22), _FONT, 0.4, _INK, 1, cv2.LINE_AA)
    cv2.putText(panel, "high", (PANEL - 56, PANEL - 22), _FONT, 0.4, _INK, 1, cv2.LINE_AA)
    return panel


def heatmap_figure(
    model: FeatherFace,
    rgb: np.ndarray,
    conf_thresh: float = 0.5,
    nms_thresh: float = 0.4,
    weights_label: str = "random init (untrained)",
    colormap: str = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """The 2x4 figure as an RGB uint8 array of shape (2 * (TITLE_H + PANEL), 4 * PANEL, 3).

    Raises `AttentionUnavailableError` for the "none" ablation (it has no masks).
    """
    dets, maps = model.inspect(rgb, conf_thresh, nms_thresh, with_masks=True)
    rgb = np.asarray(rgb)
    masks = {**maps["backbone"], **maps["bifpn"]}
    shown = min(len(dets), MAX_BOXES)
    first = _titled(_fit(draw_detections(rgb, dets, MAX_BOXES)), f"input: {len(dets)} faces >= {conf_thresh:g}"
                    + (f" (top {shown} drawn)" if shown < len(dets) else ""))
    info = _titled(_info_panel([
        f"model: {model.name}",
        model.cfg.display_name,
        f"params: {model.get_parameter_count()['total']:,}",
        f"weights: {weights_label}"[:44],
        "panels: hybrid mask M_c x M_s,",
        "channel mean, upsampled, each",
        "min-max normalised",
    ], colormap), "legend")
    panels = [first]
    for name in STAGES:
        panels.append(_titled(_fit(overlay_mask(rgb, masks[name]["hybrid_mask"], alpha, colormap)),
                              f"backbone {name} hybrid"))
    panels.append(info)
    for name in LEVELS:
        panels.append(_titled(_fit(overlay_mask(rgb, masks[name]["hybrid_mask"], alpha, colormap)),
                              f"BiFPN {name} hybrid"))
    return np.vstack([np.hstack(panels[:4]), np.hstack(panels[4:])])


def to_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise FigureError("PNG encoding failed")
    return buf.tobytes()


def heatmap_png(model: FeatherFace, rgb: np.ndarray, **kwargs) -> bytes:
    """PNG bytes of `heatmap_figure` (what the dashboard offers for download)."""
    return to_png(heatmap_figure(model, rgb, **kwargs))


def write_heatmap_figure(
    model: FeatherFace, image: Path | str, out: Path | str, weights_label: str = "random init (untrained)",
    conf_thresh: float = 0.5,
) -> bytes:
    """Read `image`, build the figure, write it atomically to `out`; returns the PNG bytes."""
    png = heatmap_png(model, read_image_rgb(image), conf_thresh=conf_thresh, weights_label=weights_label)
    atomic_write_bytes(out, png)
    return png


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.figures", description="Attention heatmap figure (2x4 grid).")
    parser.add_argument("--network", required=True, choices=list(MODEL_CONFIGS), metavar="NETWORK",
                        help="cbam | eca_cbam | eca_cbam_parallel (a model with attention blocks)")
    parser.add_argument("--trained-model", type=input_file, default=None, help="checkpoint; omitted: random init")
    parser.add_argument("--image", type=input_file, default=Path("assets/samples/astronaut.png"))
    parser.add_argument("--out", type=output_file, default="figures/attention_heatmaps.png")
    parser.add_argument("--conf", type=float, default=0.5, help="score threshold for the drawn detections")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_checked(argv)
    try:
        if args.trained_model is None:
            model, label = build_model(args.network).eval(), "random init (untrained)"
        else:
            model, _ = load_checkpoint(args.trained_model, expected_name=args.network)
            label = args.trained_model.name if args.trained_model.parent.name in ("", ".") else \
                f"{args.trained_model.parent.name}/{args.trained_model.name}"
        write_heatmap_figure(model.eval(), args.image, args.out, label, args.conf)
    except (AttentionUnavailableError, CheckpointError, FigureError, ImageInputError, KeyError) as exc:
        return fail(exc)
    print(f"wrote {args.out}")
    return 0
