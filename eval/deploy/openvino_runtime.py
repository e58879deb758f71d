"""OpenVINO as an inference backend: a compiled CPU model called exactly like the PyTorch detector.

OpenVINO's ONNX frontend has no `DeformConv`, so the model goes through its PyTorch frontend: the
fused inference copy (`eval.deploy.bn_fold.prepare_for_inference`: BN folded, merged offset convs, channel
shuffle folded into the heads) with its deformable convs either as torchvision's `deform_conv2d` op
("native": one node each, converted to OpenVINO's deformable convolution; any input size) or as the
PyTorch gather kernel ("gather": tap-table MatMul + EmbeddingBag, whose OpenVINO CPU kernel needs
static shapes, so a fixed `input_hw`). Which is faster is measured per runtime in
benchmarks/results/deploy_latency.txt; docs/deploy.md has the numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.layers.deform_conv import DeformConvStandIn, swap_deform_convs
from core.nets.ssh import use_native_deform_op
from eval.deploy.bn_fold import prepare_for_inference

OV_DCNS: tuple[str, ...] = ("native", "gather")


class TorchvisionOpDeformConv(DeformConvStandIn):
    """Trace-only stand-in for a `ModulatedDeformConv2d`: the same function as one torchvision op call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        return torch.ops.torchvision.deform_conv2d(x, self.weight, offset, mask, self.bias,
                                                   1, 1, 1, 1, 1, 1, 1, 1, True)


def torchvision_deform_conv(x: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                            bias: torch.Tensor) -> torch.Tensor:
    """A fused SSH stage's DCN as one torchvision op call (`core.nets.ssh.NativeDeformOp`)."""
    return torch.ops.torchvision.deform_conv2d(x, weight, offset, mask, bias, 1, 1, 1, 1, 1, 1, 1, 1, True)


def trace_ready(model: nn.Module, dcn: str = "native") -> nn.Module:
    """The fused CPU eval copy, contiguous layout; with "native" every DCN is one torchvision op call."""
    import torchvision  # noqa: F401 - registers torch.ops.torchvision before tracing (importing while tracing fails)

    if dcn not in OV_DCNS:
        raise ValueError(f"unknown OpenVINO DCN form {dcn!r}; choose one of {OV_DCNS}")
    ready = prepare_for_inference(model, channels_last=False, fuse_dcn=True).cpu()
    ready = ready.to(memory_format=torch.contiguous_format)
    if dcn == "gather":
        return ready
    return swap_deform_convs(use_native_deform_op(ready, torchvision_deform_conv), TorchvisionOpDeformConv)


def compile_config(threads: int) -> dict[str, object]:
    """How every OpenVINO model here is compiled: `threads` inference threads, the latency hint, and float32
    kept (no reduced-precision inference), so outputs match PyTorch's."""
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


class OpenVinoModel:
    """A compiled OpenVINO CPU model: `(N,3,H,W) tensor -> (loc, conf, landmarks)` tensors on `x`'s device."""

    def __init__(
        self, model: nn.Module, threads: int | None = None, input_hw: tuple[int, int] | None = None,
        dcn: str = "native",
    ) -> None:
        import openvino as ov

        if dcn == "gather" and input_hw is None:
            raise ValueError("OpenVINO's EmbeddingBag needs static shapes: the gather form needs input_hw")
        self.threads = int(threads) if threads else torch.get_num_threads()
        self.dcn = dcn
        hw = input_hw or (64, 64)
        shape = [1, 3, *input_hw] if input_hw else [-1, 3, -1, -1]
        with torch.no_grad():
            converted = ov.convert_model(trace_ready(model, dcn), example_input=torch.zeros(1, 3, *hw), input=shape)
        self.compiled = ov.Core().compile_model(converted, "CPU", compile_config(self.threads))
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(result[self.compiled.output(i)]) for i in range(3)]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = self.run(x.detach().cpu().contiguous().numpy())
        return tuple(torch.from_numpy(o).to(x.device) for o in outs)  # type: ignore[return-value]
