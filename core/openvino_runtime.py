"""OpenVINO as an inference backend: a compiled CPU model called exactly like the PyTorch detector.

OpenVINO's ONNX frontend has no `DeformConv`, so the model goes through its PyTorch frontend: a
BN-folded copy whose deformable convs call torchvision's `deform_conv2d` op directly (traced as one
node, converted to OpenVINO's deformable convolution). At 2 threads it ran FeatherFace about 1.9x
faster than ONNX Runtime, whose DeformConv barely uses the second thread
(benchmarks/results/deploy_latency.txt); at 1 thread ONNX Runtime is faster.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.inference import prepare_for_inference
from core.layers.deform_conv import DeformConvStandIn, swap_deform_convs


class TorchvisionOpDeformConv(DeformConvStandIn):
    """Trace-only stand-in for a `ModulatedDeformConv2d`: the same function as one torchvision op call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        return torch.ops.torchvision.deform_conv2d(x, self.weight, offset, mask, self.bias,
                                                   1, 1, 1, 1, 1, 1, 1, 1, True)


def trace_ready(model: nn.Module) -> nn.Module:
    """BN-folded CPU eval copy with every DCN as `TorchvisionOpDeformConv`."""
    import torchvision  # noqa: F401 - registers torch.ops.torchvision before tracing (importing while tracing fails)

    ready = prepare_for_inference(model, channels_last=False).cpu().to(memory_format=torch.contiguous_format)
    return swap_deform_convs(ready, TorchvisionOpDeformConv)


class OpenVinoModel:
    """A compiled OpenVINO CPU model: `(N,3,H,W) tensor -> (loc, conf, landmarks)` tensors on `x`'s device."""

    def __init__(self, model: nn.Module, threads: int | None = None, input_hw: tuple[int, int] | None = None) -> None:
        import openvino as ov

        self.threads = int(threads) if threads else torch.get_num_threads()
        hw = input_hw or (64, 64)
        shape = [1, 3, *input_hw] if input_hw else [-1, 3, -1, -1]
        with torch.no_grad():
            converted = ov.convert_model(trace_ready(model), example_input=torch.zeros(1, 3, *hw), input=shape)
        self.compiled = ov.Core().compile_model(converted, "CPU", {
            "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(result[self.compiled.output(i)]) for i in range(3)]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = self.run(x.detach().cpu().contiguous().numpy())
        return tuple(torch.from_numpy(o).to(x.device) for o in outs)  # type: ignore[return-value]
