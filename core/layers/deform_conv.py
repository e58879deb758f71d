"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) with three interchangeable kernels.

`torchvision.ops.deform_conv2d` is the reference; on CPU it is slow. The training kernel on CPU
samples the nine displaced taps with one `grid_sample` call and applies the weights as one batched
matmul. The inference kernel ("gather") runs at about convolution speed: because bilinear sampling is
linear, the weights go first, as one GEMM of the (zero-bordered) input into a table holding every
tap's contribution at every pixel, and each output pixel is then one weighted sum of 4 corners x 9 taps
rows of that table: a single `embedding_bag` call, its 36 weights the bilinear corner weights times
the modulation mask. All three compute the same function (bilinear sampling, zero outside the image);
tests check equality.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KERNELS: tuple[str, ...] = ("auto", "torchvision", "grid_sample", "gather")
TABLE_BORDER = (1, 2)
"""Zero rows/columns before and after the image in a tap table: sample points are clamped to
[-1, H] x [-1, W], where bilinear sampling of the zero-padded image is exactly zero, so no corner
needs a bounds check (torchvision returns 0 there too)."""
_GRIDS: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}


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


def tap_weights(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, kh, kw) conv weights as the (C, taps * O) matrix that builds a tap table (column k * O + o)."""
    return weight.permute(1, 2, 3, 0).reshape(weight.shape[1], -1)


def tap_table(x_nhwc: torch.Tensor, weights: torch.Tensor, out_ch: int) -> torch.Tensor:
    """Every tap's contribution at every pixel: ((N, H+3, W+3) pixels x taps, O) rows, zero on the border.

    One GEMM of the zero-bordered (N, H, W, C) input with `tap_weights(weight)`; row
    ((n * (H+3) + y) * (W+3) + x) * taps + k is tap k's weights applied to table pixel (y, x).
    """
    before, after = TABLE_BORDER
    padded = F.pad(x_nhwc, (0, 0, before, after, before, after))
    return torch.mm(padded.reshape(-1, padded.shape[-1]), weights).view(-1, out_ch)


def _tap_grids(
    n: int, h: int, w: int, kernel_size: tuple[int, int], padding: int, stacked: int, device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Undisplaced table coordinates of every tap, (H, W, stacked*taps) in y and in x; each tap's
    table row offset (N, 1, 1, stacked*taps); the 4 bilinear corners' row offsets (4, 1).

    Cached per shape in eager mode; rebuilt from the traced sizes while tracing (ONNX, OpenVINO), so
    an exported graph keeps dynamic shapes.
    """
    key = (n, h, w, kernel_size, padding, stacked, device, dtype)
    tracing = torch.jit.is_tracing()
    if not tracing and key in _GRIDS:
        return _GRIDS[key]
    kh, kw = kernel_size
    taps = kh * kw
    wp = w + sum(TABLE_BORDER)
    ky = torch.arange(kh, device=device, dtype=dtype).repeat_interleave(kw).repeat(stacked)
    kx = torch.arange(kw, device=device, dtype=dtype).repeat(kh * stacked)
    shift = TABLE_BORDER[0] - padding
    zeros = torch.zeros(h, w, 1, device=device, dtype=dtype)
    base_y = torch.arange(h, device=device, dtype=dtype).view(h, 1, 1) + shift + ky + zeros
    base_x = torch.arange(w, device=device, dtype=dtype).view(1, w, 1) + shift + kx + zeros
    image_rows = (h + sum(TABLE_BORDER)) * wp * taps
    tap_row = (torch.arange(taps, device=device).repeat(stacked)
               + torch.arange(n, device=device).view(n, 1, 1, 1) * image_rows)
    corners = (torch.tensor([0, 1, 0, 1], device=device) * taps
               + torch.tensor([0, 0, 1, 1], device=device) * (wp * taps)).view(4, 1)
    grids = (base_y, base_x, tap_row, corners)
    if not tracing:
        if len(_GRIDS) > 64:
            _GRIDS.clear()
        _GRIDS[key] = grids
    return grids


def bilinear_bags(
    dy: torch.Tensor, dx: torch.Tensor, mask: torch.Tensor, kernel_size: tuple[int, int] = (3, 3),
    padding: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tap-table rows each output pixel sums, and with what weights.

    `dy`, `dx`, `mask`: (N, H, W, G * taps), tap-major per DCN, for G stride-1 DCNs sharing one input
    grid (any strides: typically views of one offset-conv output). Returns rows (G, N*H*W, 4*taps)
    into each DCN's own `tap_table` (int64) and weights of the same
    shape: bilinear corner weight times the modulation mask, each DCN's block contiguous. Sample
    points are clamped into the zero border first, which keeps every corner inside the table without
    a bounds check and does not change the result.
    """
    n, h, w, t = dy.shape
    taps = kernel_size[0] * kernel_size[1]
    stacked = t // taps
    base_y, base_x, tap_row, corners = _tap_grids(n, h, w, kernel_size, padding, stacked, dy.device, dy.dtype)
    qy = (dy + base_y).clamp_(0, h + TABLE_BORDER[0])
    qx = (dx + base_x).clamp_(0, w + TABLE_BORDER[0])
    iy, ix = torch.floor(qy), torch.floor(qx)
    fy, fx = qy.sub_(iy), qx.sub_(ix)
    row = iy.to(torch.int64).mul_(w + sum(TABLE_BORDER)).add_(ix.to(torch.int64)).mul_(taps).add_(tap_row)
    per_dcn = (n, h, w, stacked, 1, taps)
    order = (3, 0, 1, 2, 4, 5)  # DCN-major: each DCN's bags contiguous for its embedding_bag call
    rows = row.reshape(per_dcn).permute(order).contiguous() + corners
    wy1 = fy.mul_(mask)
    wy0 = mask - wy1
    wx0 = 1 - fx
    weights = torch.cat([(a * b).reshape(per_dcn).permute(order)
                         for a, b in ((wy0, wx0), (wy0, fx), (wy1, wx0), (wy1, fx))], dim=-2)
    return rows.reshape(stacked, n * h * w, 4 * taps), weights.reshape(stacked, n * h * w, 4 * taps)


def sum_bags(table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(P, O): each output pixel's weighted sum of its table rows, one `embedding_bag` call."""
    return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")


def deform_conv2d_gather(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 1,
) -> torch.Tensor:
    """Stride-1 "same" DCNv2 as one tap-table GEMM + one `embedding_bag` (torchvision's offset layout).

    Returns (N, O, H, W) stored channels-last (a view of the (N, H, W, O) result).
    """
    n, _, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    if kh - 1 != 2 * padding or kw - 1 != 2 * padding:
        raise ValueError(f"the gather kernel computes 'same' convolutions: {kh}x{kw} needs padding "
                         f"{(kh - 1) // 2}, got {padding}")
    off = offset.permute(0, 2, 3, 1)
    rows, weights = bilinear_bags(off[..., 0::2], off[..., 1::2], mask.permute(0, 2, 3, 1), (kh, kw), padding)
    table = tap_table(x.permute(0, 2, 3, 1), tap_weights(weight), out_ch)
    out = sum_bags(table, rows[0], weights[0])
    if bias is not None:
        out = out + bias
    return out.view(n, h, w, out_ch).permute(0, 3, 1, 2)


class ModulatedDeformConv2d(nn.Module):
    """3x3 stride-1 DCNv2: one 3x3 conv predicts 18 offsets + 9 modulation logits from the input.

    The modulation is `mask_scale * sigmoid(logits)`: 2 as the seed source's DeformableConv2d
    (models/net.py:548, taps weighted in (0, 2)); 1 is DCNv2's plain sigmoid. The offset/mask conv is
    zero-initialised, so at start the layer is a plain 3x3 conv with every tap scaled by
    mask_scale * sigmoid(0) (1 with the source's scale).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: str = "auto", bias: bool = False,
                 mask_scale: float = 2.0) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown deformable-conv kernel {kernel!r}; choose one of {KERNELS}")
        self.kernel = kernel
        self.mask_scale = float(mask_scale)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.offset_mask = nn.Conv2d(in_ch, 27, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def modulation(self, logits: torch.Tensor) -> torch.Tensor:
        """Modulation mask from the 9 mask logits: `mask_scale * sigmoid`. Elementwise and the same for every
        layer of a model: the fused inference SSH (`core.nets.ssh.FusedDeformSSH`) applies it to several layers'
        logits at once."""
        return self.mask_scale * torch.sigmoid(logits)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 18, H, W) offsets, (dy, dx) per tap as torchvision, and the (N, 9, H, W) mask."""
        om = self.offset_mask(x)
        return om[:, :18], self.modulation(om[:, 18:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        use_torchvision = self.kernel == "torchvision" or (self.kernel == "auto" and x.is_cuda)
        if use_torchvision:
            from torchvision.ops import deform_conv2d

            return deform_conv2d(x, offset.contiguous(), self.weight, self.bias, padding=1,
                                 mask=mask.contiguous())
        if self.kernel == "gather":
            return deform_conv2d_gather(x, offset, mask, self.weight, self.bias, padding=1)
        return deform_conv2d_grid_sample(x, offset, mask, self.weight, self.bias, padding=1)


class DeformConvStandIn(nn.Module):
    """Base of the export- and trace-time replacements of a `ModulatedDeformConv2d` (ONNX's native
    DeformConv, OpenVINO's torchvision op): shares its weights and offset/mask conv, and always holds a
    bias tensor, since those runtime ops take one."""

    def __init__(self, dcn: ModulatedDeformConv2d) -> None:
        super().__init__()
        self.offset_mask = dcn.offset_mask
        self._dcn_modulation = dcn.modulation
        self.weight = dcn.weight
        bias = dcn.bias if dcn.bias is not None else torch.zeros(dcn.weight.shape[0], dtype=dcn.weight.dtype)
        self.register_buffer("bias", bias.detach().clone(), persistent=False)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        om = self.offset_mask(x)
        return om[:, :18], self._dcn_modulation(om[:, 18:])


def swap_deform_convs(model: nn.Module, stand_in: type[DeformConvStandIn]) -> nn.Module:
    """Replace every `ModulatedDeformConv2d` under `model` by `stand_in(dcn)`, in place; returns `model`."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ModulatedDeformConv2d):
                setattr(parent, name, stand_in(child))
    return model
