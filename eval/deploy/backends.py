"""The forward pass a backend name stands for: the PyTorch model itself, or a runtime session made from it.

`FeatherFace.detect(..., forward=forward_for(model, backend))` keeps the runtimes out of core: the detector's
pre- and post-processing run around whatever forward callable it is handed (`core.predictor`).
"""

from __future__ import annotations

from torch import nn

from core.predictor import Forward
from eval.deploy.onnx_runtime import check_backend, runtime_for


def forward_for(model: nn.Module, backend: str = "torch", threads: int | None = None) -> Forward | None:
    """None for "torch" (the model runs itself), else the cached ONNX Runtime / OpenVINO session for `model`;
    an unknown name raises ValueError listing the known ones."""
    if check_backend(backend) == "torch":
        return None
    return runtime_for(model, threads, backend=backend)
