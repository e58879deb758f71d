"""FLOPs of a forward pass, total and per part (backbone, attention, BiFPN or FPN, SSH, heads).

Convention: FLOPs = 2 x multiply-accumulates, as `torch.utils.flop_counter.FlopCounterMode` counts
convolutions, linear layers and matmuls. Element-wise work (activations, sigmoid gates, the attention
products X * M, mean/max pooling, BiFPN resizing, channel shuffle) is not counted, by that convention.

The flop counter does not see the deformable convolutions in the SSH modules: the
`torchvision::deform_conv2d` op has no FLOP formula, and the CPU kernel's `grid_sample` gather has
none either. Their cost is therefore added analytically, per modulated deformable 3x3 conv with
C_in inputs, C_out outputs, K = 9 taps and an H x W output:
  weighted sum       2 * C_in * K * C_out * H * W   (what an ordinary 3x3 conv would count)
  bilinear sampling  7 * C_in * K * H * W           (4 multiplies + 3 adds per sampled value)
  modulation         1 * C_in * K * H * W           (each sample times its DCNv2 mask)
The 3x3 conv that predicts offsets and masks is a plain conv and is counted by the flop counter.

The count runs on the "meta" device (shapes only, no arithmetic), so it takes well under a second
and does not depend on the weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.config import ModelConfig, get_config
from core.detector import FeatherFace
from core.layers.deform_conv import ModulatedDeformConv2d

DCN_SAMPLING_FLOPS = 7  # bilinear interpolation per sampled value: 4 multiplies + 3 adds
DCN_MODULATION_FLOPS = 1  # one multiply by the modulation mask per sampled value

# Part name -> top-level attributes of FeatherFace whose FLOPs it gathers (as in get_parameter_count).
PART_MODULES: dict[str, tuple[str, ...]] = {
    "backbone": ("body",),
    "attention_backbone": ("backbone_attention",),
    "bifpn": ("bifpn",),
    "fpn": ("fpn",),
    "attention_bifpn": ("bifpn_attention",),
    "ssh": ("ssh",),
    "heads": ("heads",),
}


@dataclass(frozen=True)
class FlopReport:
    """FLOPs of one forward pass at `input_hw`; `parts` sum to `total` (attention = its two halves)."""

    model: str
    input_hw: tuple[int, int]
    total: int
    parts: dict[str, int]
    counted: int  # seen by FlopCounterMode
    deform_analytic: int  # added for the deformable convs
    deform_layers: list[dict[str, int]] = field(default_factory=list)

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def deform_conv_flops(in_ch: int, out_ch: int, out_h: int, out_w: int, taps: int = 9) -> int:
    """Analytic FLOPs of one modulated deformable conv (weighted sum + bilinear sampling + modulation)."""
    samples = in_ch * taps * out_h * out_w
    return 2 * samples * out_ch + (DCN_SAMPLING_FLOPS + DCN_MODULATION_FLOPS) * samples


def count_flops(model: str | ModelConfig | FeatherFace, input_hw: tuple[int, int] = (640, 640)) -> FlopReport:
    """Count FLOPs of `model` (a name, config or instance) on a 1 x 3 x H x W input."""
    cfg = model.cfg if isinstance(model, FeatherFace) else (get_config(model) if isinstance(model, str) else model)
    with torch.device("meta"):
        net = copy.deepcopy(model).to("meta") if isinstance(model, FeatherFace) else FeatherFace(cfg)
    net.eval()
    deform: list[tuple[str, ModulatedDeformConv2d]] = []
    shapes: dict[str, tuple[int, int, int, int]] = {}
    handles = []
    for name, mod in net.named_modules():
        if isinstance(mod, ModulatedDeformConv2d):
            mod.kernel = "torchvision"  # one opaque op: the counter counts none of it, the formula all of it
            deform.append((name, mod))
            handles.append(mod.register_forward_hook(_record_shape(shapes, name)))
    counter = FlopCounterMode(display=False, depth=None)
    x = torch.zeros(1, 3, *input_hw, device="meta")
    try:
        with counter, torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    by_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(net).__name__
    parts = {part: sum(_module_flops(by_module, f"{root}.{attr}") for attr in attrs)
             for part, attrs in PART_MODULES.items()}

    layers = []
    for name, mod in deform:
        _, out_ch, out_h, out_w = shapes[name]
        in_ch = mod.weight.shape[1]
        flops = deform_conv_flops(in_ch, out_ch, out_h, out_w, mod.weight.shape[2] * mod.weight.shape[3])
        layers.append({"module": name, "in_ch": in_ch, "out_ch": out_ch, "h": out_h, "w": out_w, "flops": flops})
        part = next(p for p, attrs in PART_MODULES.items() if name.split(".")[0] in attrs)
        parts[part] += flops
    parts["attention"] = parts["attention_backbone"] + parts["attention_bifpn"]
    counted = int(counter.get_total_flops())
    analytic = sum(layer["flops"] for layer in layers)
    return FlopReport(model=cfg.name, input_hw=(int(input_hw[0]), int(input_hw[1])), total=counted + analytic,
                      parts={k: int(v) for k, v in parts.items()}, counted=counted, deform_analytic=analytic,
                      deform_layers=layers)


def _module_flops(by_module: dict[str, int], prefix: str) -> int:
    """FLOPs under `prefix`; a ModuleList has no forward of its own, so sum its direct children."""
    if prefix in by_module:
        return by_module[prefix]
    depth = prefix.count(".") + 1
    return sum(v for k, v in by_module.items() if k.startswith(prefix + ".") and k.count(".") == depth)


def _record_shape(store: dict[str, tuple[int, int, int, int]], name: str):
    def hook(_m: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        store[name] = tuple(output.shape)

    return hook
