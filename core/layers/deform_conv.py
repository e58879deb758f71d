"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) with two interchangeable kernels.

`torchvision.ops.deform_conv2d` is the reference; on CPU it is slow, so the default CPU kernel
samples the nine displaced taps with one `grid_sample` call and applies the weights as one batched matmul.
Both compute the same function (bilinear sampling, zero outside the image); tests check equality.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KERNELS: tuple[str, ...] = ("auto", "torchvision", "grid_sample")


def deform_conv2d_grid_sample(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 1,
) -> torch.Tensor:
    """Stride-1 DCNv2 as one gather + one batched GEMM; offsets laid out like torchvision's ((dy, dx) per tap).

    The nine taps are sampled tap-major (the input is viewed nine times as a batch, no copy), each tap's
    columns go through its own slice of the weights, and the modulation mask is applied after the GEMM,
    on C_out rather than C_in rows (the SSH convs shrink 52 -> 26/13 channels).
    """
    n, c, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    dev, dt = x.device, x.dtype
    ky, kx = torch.meshgrid(torch.arange(kh, device=dev, dtype=dt), torch.arange(kw, device=dev, dtype=dt),
                            indexing="ij")
    off = offset.reshape(n, taps, 2, ho, wo)
    rows = torch.arange(ho, device=dev, dtype=dt).view(1, 1, ho, 1) - padding
    cols = torch.arange(wo, device=dev, dtype=dt).view(1, 1, 1, wo) - padding
    py = rows + ky.reshape(1, taps, 1, 1) + off[:, :, 0]
    px = cols + kx.reshape(1, taps, 1, 1) + off[:, :, 1]
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).reshape(n * taps, ho, wo, 2)
    per_tap_input = x.unsqueeze(1).expand(n, taps, c, h, w).reshape(n * taps, c, h, w)
    sampled = F.grid_sample(per_tap_input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    tap_weights = weight.reshape(out_ch, c, taps).permute(2, 0, 1)
    per_tap = torch.matmul(tap_weights, sampled.reshape(n, taps, c, ho * wo))
    out = (per_tap * mask.reshape(n, taps, 1, ho * wo)).sum(dim=1)
    if bias is not None:
        out = out + bias.view(1, out_ch, 1)
    return out.view(n, out_ch, ho, wo)


class ModulatedDeformConv2d(nn.Module):
    """3x3 stride-1 DCNv2: one 3x3 conv predicts 18 offsets + 9 modulation logits from the input.

    The offset/mask conv is zero-initialised, so at start the layer is a plain 3x3 conv with every
    tap scaled by sigmoid(0) = 0.5 (the DCNv2 initialisation).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: str = "auto", bias: bool = False) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown deformable-conv kernel {kernel!r}; choose one of {KERNELS}")
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.offset_mask = nn.Conv2d(in_ch, 27, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.offset_mask(x)
        offset = om[:, :18]
        mask = torch.sigmoid(om[:, 18:])
        use_torchvision = self.kernel == "torchvision" or (self.kernel == "auto" and x.is_cuda)
        if use_torchvision:
            from torchvision.ops import deform_conv2d

            return deform_conv2d(x, offset.contiguous(), self.weight, self.bias, padding=1,
                                 mask=mask.contiguous())
        return deform_conv2d_grid_sample(x, offset, mask, self.weight, self.bias, padding=1)


class DeformConvStandIn(nn.Module):
    """Base of the export- and trace-time replacements of a `ModulatedDeformConv2d` (ONNX's native
    DeformConv, OpenVINO's torchvision op): shares its weights and offset/mask conv, and always holds a
    bias tensor, since those runtime ops take one."""

    def __init__(self, dcn: ModulatedDeformConv2d) -> None:
        super().__init__()
        self.offset_mask = dcn.offset_mask
        self.weight = dcn.weight
        bias = dcn.bias if dcn.bias is not None else torch.zeros(dcn.weight.shape[0], dtype=dcn.weight.dtype)
        self.register_buffer("bias", bias.detach().clone(), persistent=False)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        om = self.offset_mask(x)
        return om[:, :18], torch.sigmoid(om[:, 18:])


def swap_deform_convs(model: nn.Module, stand_in: type[DeformConvStandIn]) -> nn.Module:
    """Replace every `ModulatedDeformConv2d` under `model` by `stand_in(dcn)`, in place; returns `model`."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ModulatedDeformConv2d):
                setattr(parent, name, stand_in(child))
    return model
