"""ONNX Runtime as an inference backend: a CPU session called exactly like the PyTorch detector.

`OnnxRuntimeModel(x)` takes the model's input tensor (N,3,H,W) and returns `(loc, conf, landmarks)`
tensors, so post-processing, the predictor and the latency benchmark do not care which backend ran.
Thread counts are fixed when the session is made (intra-op `threads`, inter-op 1, sequential
execution) and kept on the object so they can be recorded beside every measurement.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.io.cli_paths import missing_tools
from eval.deploy.onnx_export import INPUT_NAME, OUTPUT_NAMES, DcnExport, export_onnx_bytes

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
"""openvino: `eval.deploy.openvino_runtime.OpenVinoModel`, same call; per-runtime latency in docs/deploy.md."""
OPT_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")


BACKEND_PACKAGES: dict[str, tuple[str, ...]] = {"torch": (), "onnxruntime": ("onnx", "onnxruntime"),
                                                "openvino": ("openvino",)}


def backend_missing(backend: str) -> str | None:
    """Why `backend` cannot run here (its optional package is not installed), or None: checked before any work."""
    gone = missing_tools(modules=BACKEND_PACKAGES.get(backend, ()))
    if not gone:
        return None
    return (f"--backend {backend} needs {', '.join(gone)}, not installed here (pip install "
            f"{' '.join(BACKEND_PACKAGES[backend])}); use --backend torch")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def session_options(threads: int, optimization: str = "all", spinning: bool = False):  # noqa: ANN201 - ort type
    """CPU session options: `threads` intra-op threads, one inter-op thread, sequential execution.

    `spinning=False` stops ONNX Runtime's idle workers from busy-waiting after each run. Every timing here
    interleaves several sessions in one process, and the spinning workers of the session that just ran take
    the cores of the next: retinaface_mnet ran in 23.9 ms instead of 13.3 ms beside a spinning FeatherFace
    session (benchmarks/results/deploy_latency.txt). Alone, spinning is about 10% faster for FeatherFace.
    """
    import onnxruntime as ort

    if optimization not in OPT_LEVELS:
        raise ValueError(f"unknown graph optimization level {optimization!r}; choose one of {OPT_LEVELS}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    return opts


class OnnxRuntimeModel:
    """An ONNX Runtime CPU inference session over an exported detector (file path or serialized bytes)."""

    def __init__(
        self,
        onnx_model: bytes | str | Path,
        threads: int | None = None,
        optimization: str = "all",
        profile_prefix: str | None = None,
        spinning: bool = False,
    ) -> None:
        """`spinning`: see `session_options` (off by default, for interleaved timing)."""
        import onnxruntime as ort

        self.threads = int(threads) if threads else torch.get_num_threads()
        self.optimization = optimization
        opts = session_options(self.threads, optimization, spinning)
        if profile_prefix is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        source = str(onnx_model) if isinstance(onnx_model, (str, Path)) else onnx_model
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        names = tuple(o.name for o in self.session.get_outputs())
        if names != OUTPUT_NAMES:
            raise ValueError(f"ONNX model outputs {names}, expected {OUTPUT_NAMES} (not a detector export?)")

    @classmethod
    def from_model(
        cls, model: nn.Module, threads: int | None = None, optimization: str = "all", dcn: DcnExport = "native",
        input_hw: tuple[int, int] | None = None,
    ) -> OnnxRuntimeModel:
        """Export `model` in memory and open it: any input size, or fixed to `input_hw` when given."""
        data = export_onnx_bytes(model, input_hw or (640, 640), dynamic=input_hw is None, dcn=dcn)
        return cls(data, threads, optimization)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw session call on a float32 NCHW array."""
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same contract as the detector's forward; outputs come back on `x`'s device."""
        outs = self.run(x.detach().cpu().contiguous().numpy())
        return tuple(torch.from_numpy(o).to(x.device) for o in outs)  # type: ignore[return-value]

    def end_profiling(self) -> str:
        """Stop profiling; returns the path of ONNX Runtime's JSON trace."""
        return self.session.end_profiling()


_SESSIONS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, int], tuple[tuple, object]]] = (
    weakref.WeakKeyDictionary()
)


def runtime_for(model: nn.Module, threads: int | None = None, backend: str = "onnxruntime"):
    """A dynamic-shape session of `backend` ("onnxruntime" or "openvino") for `model`, cached per model,
    backend and thread count until its weights change.

    The cache key includes every parameter's and buffer's storage and in-place version counter, so a
    training step or `load_state_dict` re-exports instead of silently running stale weights.
    """
    threads = int(threads) if threads else torch.get_num_threads()
    fingerprint = tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))
    per_model = _SESSIONS.setdefault(model, {})
    key = (check_backend(backend), threads)
    cached = per_model.get(key)
    if cached is None or cached[0] != fingerprint:
        if backend == "openvino":
            from eval.deploy.openvino_runtime import OpenVinoModel

            cached = (fingerprint, OpenVinoModel(model, threads))
        elif backend == "onnxruntime":
            cached = (fingerprint, OnnxRuntimeModel.from_model(model, threads))
        else:
            raise ValueError("the torch backend is the model itself")
        per_model[key] = cached
    return cached[1]
