"""`python -m eval.export`: write a verified ONNX file of a detector (BN folded, native DeformConv).

The file is produced in memory, checked with `onnx.checker`, run in ONNX Runtime on the bundled
sample image and compared with the PyTorch model's own outputs; only when every output agrees to
`tolerance` is it written (atomically), so a failed or interrupted export never leaves a file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import MODEL_CONFIGS
from core.factory import build_model
from core.io.atomic import atomic_write_bytes
from core.io.cli_paths import CliParser, fail, input_file, output_file
from core.io.image_input import rgb_to_model_tensor
from eval.deploy.onnx_export import DCN_EXPORTS, OnnxExportError, check_onnx, export_onnx_bytes
from eval.deploy.onnx_runtime import OnnxRuntimeModel

SAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "assets" / "samples" / "astronaut.png"
TOLERANCE = 1e-4
DYNAMIC_CHECK_HW = (360, 488)  # a second, non-square size not a multiple of 32, for --dynamic files


@dataclass(frozen=True)
class ExportReport:
    """What was written and how it was verified."""

    path: Path
    bytes: int
    nodes: int
    deform_conv_nodes: int
    checked_sizes: tuple[tuple[int, int], ...]
    max_abs_diff: float


def sample_input(hw: tuple[int, int], bgr_mean: Sequence[float]) -> torch.Tensor:
    """The bundled sample photo resized to `hw`, as the model's (1,3,H,W) input."""
    bgr = cv2.imread(str(SAMPLE_IMAGE), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OnnxExportError(f"{SAMPLE_IMAGE}: bundled sample image missing or unreadable")
    rgb = cv2.resize(bgr, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)[..., ::-1]
    return rgb_to_model_tensor(np.ascontiguousarray(rgb), tuple(bgr_mean))


def max_output_diff(model: nn.Module, runtime: OnnxRuntimeModel, x: torch.Tensor) -> float:
    """Largest |PyTorch - ONNX Runtime| over loc, conf and landmarks (shapes must match too)."""
    with torch.inference_mode():
        ref = model.eval()(x.to(next(model.parameters()).device))
    got = runtime(x)
    worst = 0.0
    for name, a, b in zip(("loc", "conf", "landmarks"), ref, got, strict=True):
        if tuple(a.shape) != tuple(b.shape):
            raise OnnxExportError(f"output {name}: ONNX Runtime shape {tuple(b.shape)} != PyTorch {tuple(a.shape)}")
        worst = max(worst, float((a.detach().float().cpu() - b).abs().max()))
    return worst


def export_model(
    model: nn.Module,
    out: Path | str,
    input_hw: tuple[int, int] = (640, 640),
    dynamic: bool = False,
    dcn: str = "native",
    tolerance: float = TOLERANCE,
    progress: bool = False,
) -> ExportReport:
    """Export, check, verify against PyTorch on the sample, then write `out` atomically (tqdm with `progress`)."""
    import onnx

    with tqdm(total=4, desc="export", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("tracing")
        data = export_onnx_bytes(model, input_hw, dynamic=dynamic, dcn=dcn)
        bar.update()
        bar.set_postfix_str("onnx.checker")
        check_onnx(data)
        bar.update()
        bar.set_postfix_str("ONNX Runtime vs PyTorch")
        runtime = OnnxRuntimeModel(data)
        sizes = (tuple(input_hw), DYNAMIC_CHECK_HW) if dynamic else (tuple(input_hw),)
        mean = model.cfg.bgr_mean
        worst = max(max_output_diff(model, runtime, sample_input(hw, mean)) for hw in sizes)
        if not worst <= tolerance:
            raise OnnxExportError(f"ONNX Runtime outputs differ from PyTorch by {worst:.3g} (> {tolerance:g}) "
                                  f"on {SAMPLE_IMAGE.name}; nothing written")
        bar.update()
        bar.set_postfix_str("writing")
        atomic_write_bytes(out, data)
        bar.update()
    graph = onnx.load_from_string(data).graph
    return ExportReport(path=Path(out), bytes=len(data), nodes=len(graph.node),
                        deform_conv_nodes=sum(n.op_type == "DeformConv" for n in graph.node),
                        checked_sizes=sizes, max_abs_diff=worst)


def load_network(network: str, trained_model: Path | str | None) -> nn.Module:
    """The named entry, with the checkpoint's weights when given (another variant's checkpoint is refused)."""
    if network not in MODEL_CONFIGS:
        raise KeyError(f"unknown network {network!r}; choose one of {sorted(MODEL_CONFIGS)}")
    if trained_model is None:
        return build_model(network).eval()
    model, _ = load_checkpoint(trained_model, expected_name=network)
    return model.eval()


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.export", description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True, choices=list(MODEL_CONFIGS), help=" | ".join(MODEL_CONFIGS))
    parser.add_argument("--trained-model", type=input_file, default=None,
                        help="checkpoint (.pth) of that network (default: random init, for latency work)")
    parser.add_argument("--out", required=True, type=output_file, help="ONNX file to write")
    parser.add_argument("--size", nargs=2, type=int, default=[640, 640], metavar=("H", "W"),
                        help="input size traced (and fixed unless --dynamic); default 640 640")
    parser.add_argument("--dynamic", action="store_true", help="leave batch, height and width free")
    parser.add_argument("--dcn", choices=DCN_EXPORTS, default="native",
                        help="deformable convs as ONNX DeformConv (default) or the grid_sample formulation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.size) < 32:
        print(f"error: --size must be at least 32 x 32, got {args.size}", file=sys.stderr)
        return 2
    try:
        model = load_network(args.network, args.trained_model)
        report = export_model(model, args.out, tuple(args.size), args.dynamic, args.dcn, progress=True)
    except (CheckpointError, OnnxExportError, KeyError) as exc:
        return fail(exc)
    weights = args.trained_model or "random init"
    shape = "dynamic N x 3 x H x W" if args.dynamic else f"1 x 3 x {args.size[0]} x {args.size[1]}"
    print(f"{report.path}: {args.network} ({weights}), input {shape}, {report.nodes} nodes "
          f"({report.deform_conv_nodes} DeformConv), {report.bytes / 1e6:.2f} MB; onnx.checker ok; "
          f"max |ONNX Runtime - PyTorch| = {report.max_abs_diff:.2e} on {SAMPLE_IMAGE.name} at "
          f"{', '.join(f'{h}x{w}' for h, w in report.checked_sizes)}")
    return 0
