"""ONNX export of the BN-folded inference model, deformable convs as ONNX's native `DeformConv` (opset 19).

torchvision's `deform_conv2d` does not export, the grid_sample formulation exports as ~160 small ops
per layer, and the PyTorch path's `embedding_bag` has no ONNX counterpart that ONNX Runtime runs fast
(Gather + Mul + ReduceSum and GridSample were both slower than its DeformConv, benchmarks/results/
deploy_latency.txt). So the model is the fused inference copy (`eval.deploy.bn_fold.prepare_for_inference`:
BN folded, each SSH's offset convs that read one tensor merged, the channel shuffle folded into the
heads) and each deformable conv is traced through an autograd Function whose `symbolic` emits one
`DeformConv` node (ONNX Runtime >= 1.2x has a CPU kernel for it), while its eager forward is the
grid_sample kernel, so tracing still produces real outputs. The legacy
TorchScript exporter (`dynamo=False`) is used: it honours `symbolic` and needs no onnxscript.
Export happens in memory; writing the file is the caller's job (atomically).
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

import torch
from torch import nn

from core.layers.deform_conv import (
    DeformConvStandIn,
    ModulatedDeformConv2d,
    deform_conv2d_grid_sample,
    swap_deform_convs,
)
from core.nets.ssh import use_native_deform_op
from eval.deploy.bn_fold import prepare_for_inference

OPSET = 19
INPUT_NAME = "input"
OUTPUT_NAMES: tuple[str, str, str] = ("loc", "conf", "landmarks")
DcnExport = Literal["native", "grid_sample"]
DCN_EXPORTS: tuple[str, ...] = ("native", "grid_sample")


class OnnxExportError(RuntimeError):
    """The model could not be exported, or the exported file does not compute what the model does."""


class _DeformConvOp(torch.autograd.Function):
    """Stride-1, pad-1 modulated 3x3 deformable conv; exports as one ONNX `DeformConv` node."""

    @staticmethod
    def forward(ctx, x, weight, offset, bias, mask):  # noqa: ANN001, ANN205 - autograd signature
        return deform_conv2d_grid_sample(x, offset, mask, weight, bias, padding=1)

    @staticmethod
    def symbolic(g, x, weight, offset, bias, mask):  # noqa: ANN001, ANN205 - exporter signature
        # Offsets are (dy, dx) per tap, tap-major: the layout ONNX specifies and torchvision uses.
        return g.op("DeformConv", x, weight, offset, bias, mask, kernel_shape_i=[3, 3], pads_i=[1, 1, 1, 1],
                    strides_i=[1, 1], dilations_i=[1, 1], group_i=1, offset_group_i=1)


class NativeDeformConv(DeformConvStandIn):
    """Export-only stand-in for a `ModulatedDeformConv2d`: same weights, same function, one ONNX node."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        return _DeformConvOp.apply(x, self.weight, offset, self.bias, mask)


def onnx_deform_conv(x: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
    """A fused SSH stage's DCN as one ONNX `DeformConv` node (`core.nets.ssh.NativeDeformOp`)."""
    return _DeformConvOp.apply(x, weight, offset, bias, mask)


def export_ready(model: nn.Module, dcn: DcnExport = "native") -> nn.Module:
    """Contiguous-layout eval copy of `model` on CPU for export. "native": the fused inference copy,
    each DCN one `DeformConv` node; "grid_sample": BN folded only, DCNs in the grid_sample formulation."""
    if dcn not in DCN_EXPORTS:
        raise ValueError(f"unknown DCN export {dcn!r}; choose one of {DCN_EXPORTS}")
    native = dcn == "native"
    ready = prepare_for_inference(model, channels_last=False, fuse_dcn=native)
    ready = ready.cpu().to(memory_format=torch.contiguous_format)
    if not native:
        for module in ready.modules():
            if isinstance(module, ModulatedDeformConv2d):
                module.kernel = "grid_sample"
        return ready
    return swap_deform_convs(use_native_deform_op(ready, onnx_deform_conv), NativeDeformConv)


def export_onnx_bytes(
    model: nn.Module,
    input_hw: tuple[int, int] = (640, 640),
    dynamic: bool = False,
    dcn: DcnExport = "native",
) -> bytes:
    """Serialized ONNX model of `export_ready(model)`: input `input` (N,3,H,W) float32 BGR minus mean,
    outputs `loc` (N,A,4), `conf` (N,A,2), `landmarks` (N,A,10) in the PyTorch forward's order.

    `dynamic` leaves batch, height and width free (the detector runs at any image size); otherwise
    the graph is fixed to batch 1 at `input_hw`, which lets ONNX Runtime fold every shape.
    """
    ready = export_ready(model, dcn)
    example = torch.zeros(1, 3, *input_hw)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    if dynamic:
        axes.update({name: {0: "batch", 1: "anchors"} for name in OUTPUT_NAMES})
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript and a custom
        # translation for DeformConv); it is still the supported path for `symbolic` in torch 2.14.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(ready, (example,), buf, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                              do_constant_folding=True)
        except Exception as exc:  # the exporter raises many types; the caller wants one
            raise OnnxExportError(f"ONNX export failed: {exc}") from exc
    return buf.getvalue()


def check_onnx(data: bytes) -> None:
    """`onnx.checker` (full check, with shape inference) on a serialized model; OnnxExportError if invalid."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"exported model fails onnx.checker: {exc}") from exc

