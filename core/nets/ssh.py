"""SSH context module (Najibi et al. 2017): deformable (FeatherFace) or plain (RetinaFace) 3x3 convs,
then an optional channel shuffle; and its fused inference form (`FusedDeformSSH`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.layers.deform_conv import (
    ModulatedDeformConv2d,
    bilinear_bags,
    sum_bags,
    tap_table,
    tap_weights,
)

SHUFFLES: tuple[str, ...] = ("channel_shuffle2", "shufflenet")


def channel_shuffle(x: torch.Tensor, groups: int, layout: str = "channel_shuffle2") -> torch.Tensor:
    """Parameter-free channel shuffle.

    "channel_shuffle2" is the seed source's (models/net.py:602-625): channels viewed as (C/g, g) and
    transposed, so output channel j*(C/g) + i is input channel i*g + j (with g=2: the even channels,
    then the odd ones). "shufflenet" is ShuffleNet's (g, C/g) view, the inverse permutation.
    """
    n, c, h, w = x.shape
    if layout == "channel_shuffle2":
        return x.view(n, c // groups, groups, h, w).transpose(1, 2).reshape(n, c, h, w)
    if layout == "shufflenet":
        return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
    raise ValueError(f"unknown channel shuffle {layout!r}; choose one of {SHUFFLES}")


class ContextConvBN(nn.Module):
    """3x3 conv (deformable or plain, no bias) + BN, optionally followed by LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, leaky: float | None, deformable: bool = True,
                 mask_scale: float = 2.0) -> None:
        super().__init__()
        self.conv = (ModulatedDeformConv2d(in_ch, out_ch, mask_scale=mask_scale) if deformable
                     else nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False))
        self.bn = nn.BatchNorm2d(out_ch)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.leaky_relu(x, self.leaky) if self.leaky is not None else x


class SSH(nn.Module):
    """3x3, 5x5 (two 3x3) and 7x7 (three 3x3, sharing the first) branches, concatenated.

    Five 3x3 convs. FeatherFace: deformable, 57,855 parameters at 52 channels, output channel-shuffled
    in 2 groups so the three receptive-field branches mix before the 1x1 heads. RetinaFace: plain
    convs, no shuffle (`shuffle_groups=1`), 34,752 parameters at 64 channels.
    """

    def __init__(self, in_ch: int, out_ch: int, shuffle_groups: int = 2, deformable: bool = True,
                 mask_scale: float = 2.0, shuffle_layout: str = "channel_shuffle2") -> None:
        super().__init__()
        if out_ch % 4 != 0:
            raise ValueError(f"SSH output channels must be divisible by 4, got {out_ch}")
        if shuffle_layout not in SHUFFLES:
            raise ValueError(f"unknown channel shuffle {shuffle_layout!r}; choose one of {SHUFFLES}")
        leaky = 0.1 if out_ch <= 64 else 0.0
        self.conv3x3 = ContextConvBN(in_ch, out_ch // 2, None, deformable, mask_scale)
        self.conv5x5_1 = ContextConvBN(in_ch, out_ch // 4, leaky, deformable, mask_scale)
        self.conv5x5_2 = ContextConvBN(out_ch // 4, out_ch // 4, None, deformable, mask_scale)
        self.conv7x7_2 = ContextConvBN(out_ch // 4, out_ch // 4, leaky, deformable, mask_scale)
        self.conv7x7_3 = ContextConvBN(out_ch // 4, out_ch // 4, None, deformable, mask_scale)
        self.shuffle_groups = shuffle_groups
        self.shuffle_layout = shuffle_layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3x3(x)
        mid = self.conv5x5_1(x)
        branch5 = self.conv5x5_2(mid)
        branch7 = self.conv7x7_3(self.conv7x7_2(mid))
        return self.shuffle(F.relu(torch.cat([branch3, branch5, branch7], dim=1)))

    def shuffle(self, out: torch.Tensor) -> torch.Tensor:
        """The fixed channel permutation applied to the concatenated branches (identity without groups)."""
        return channel_shuffle(out, self.shuffle_groups, self.shuffle_layout) if self.shuffle_groups > 1 else out

    def shuffle_permutation(self, channels: int) -> torch.Tensor:
        """`perm` with shuffle(x)[:, j] == x[:, perm[j]], read off by shuffling channel indices."""
        index = torch.arange(channels, dtype=torch.float64).view(1, channels, 1, 1)
        return self.shuffle(index).flatten().round().long()


NativeDeformOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""A runtime's own DCNv2 op as `op(x, weight, offset, mask, bias)`, offsets in torchvision's layout."""


class FusedStage(nn.Module):
    """The deformable convs of one SSH stage that read the same tensor, computed together.

    One 3x3 conv predicts every layer's offsets and mask logits (their offset convs concatenated, the
    output channels reordered to all dy, all dx, all logits, so each is one slice). With the default
    "gather" kernel, one `bilinear_bags` call gives every layer's table rows and weights, then per
    layer one tap-table GEMM and one `embedding_bag`, its folded BN bias and activation. With
    `native` set (an exporter's stand-in for a runtime's DCN op), each layer is one call of that op.
    """

    def __init__(self, layers: list[ContextConvBN]) -> None:
        super().__init__()
        dcns = [layer.conv for layer in layers]
        if any(not isinstance(layer.bn, nn.Identity) for layer in layers):
            raise ValueError("fuse after folding BatchNorm into the deformable convs (eval.deploy.bn_fold)")
        if len({(type(d).modulation, d.mask_scale) for d in dcns}) != 1:
            raise ValueError("the layers of a fused stage must share one modulation function")
        self.modulation = dcns[0].modulation
        self.taps = 9
        order = [d * 27 + 2 * k + part for part in (0, 1) for d in range(len(dcns)) for k in range(9)]
        order += [d * 27 + 18 + k for d in range(len(dcns)) for k in range(9)]
        weight = torch.cat([d.offset_mask.weight for d in dcns])[order]
        self.offset = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1, device=weight.device,
                                dtype=weight.dtype).requires_grad_(False)
        with torch.no_grad():
            self.offset.weight.copy_(weight)
            self.offset.bias.copy_(torch.cat([d.offset_mask.bias for d in dcns])[order])
        self.out_channels = [d.weight.shape[0] for d in dcns]
        self.leaky = [layer.leaky for layer in layers]
        self.native: NativeDeformOp | None = None
        for i, d in enumerate(dcns):
            self.register_buffer(f"weight{i}", d.weight.detach().clone())
            self.register_buffer(f"tap_weight{i}", tap_weights(d.weight.detach()).contiguous())
            conv_bias = d.bias.detach() if d.bias is not None else d.weight.new_zeros(d.weight.shape[0])
            self.register_buffer(f"bias{i}", conv_bias.clone())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, C, H, W) input -> each layer's (N, O_i, H, W) output (channels-last storage from "gather")."""
        n, _, h, w = x.shape
        t = len(self.out_channels) * self.taps
        if self.native is not None:
            return self._native(x, self.offset(x), t)
        om = self.offset(x).permute(0, 2, 3, 1)
        rows, weights = bilinear_bags(om[..., :t], om[..., t:2 * t], self.modulation(om[..., 2 * t:]))
        x_nhwc = x.permute(0, 2, 3, 1)
        outs = []
        for i, (out_ch, leaky) in enumerate(zip(self.out_channels, self.leaky, strict=True)):
            table = tap_table(x_nhwc, getattr(self, f"tap_weight{i}"), out_ch)
            out = sum_bags(table, rows[i], weights[i]) + getattr(self, f"bias{i}")
            out = F.leaky_relu(out, leaky) if leaky is not None else out
            outs.append(out.view(n, h, w, out_ch).permute(0, 3, 1, 2))
        return outs

    def _native(self, x: torch.Tensor, om: torch.Tensor, t: int) -> list[torch.Tensor]:
        n, _, h, w = x.shape
        outs = []
        for i, leaky in enumerate(self.leaky):
            taps = slice(i * self.taps, (i + 1) * self.taps)
            dy, dx = om[:, taps], om[:, t:][:, taps]
            offset = torch.stack((dy, dx), dim=2).reshape(n, 2 * self.taps, h, w)
            mask = self.modulation(om[:, 2 * t:][:, taps])
            out = self.native(x, getattr(self, f"weight{i}"), offset, mask, getattr(self, f"bias{i}"))
            outs.append(F.leaky_relu(out, leaky) if leaky is not None else out)
        return outs


class FusedDeformSSH(nn.Module):
    """Inference form of a BN-folded deformable `SSH`: the same function in 3 fused stages.

    The 3x3 branch and the 5x5 branch's first conv read the input; the 5x5 branch's second conv and the
    7x7 branch's second conv read that first conv's output; the last conv reads the 7x7 one's. Each
    stage is a `FusedStage`, so 5 deformable convs become 3 offset convs, 3 index computations,
    5 GEMMs and 5 `embedding_bag` calls. With `shuffle=False` the channel shuffle is left out: the
    caller folds the permutation into the next layer's weights (`eval.deploy.bn_fold.fuse_deformable_ssh`).
    """

    def __init__(self, ssh: SSH, shuffle: bool = True) -> None:
        super().__init__()
        self.stage_input = FusedStage([ssh.conv3x3, ssh.conv5x5_1])
        self.stage_mid = FusedStage([ssh.conv5x5_2, ssh.conv7x7_2])
        self.stage_last = FusedStage([ssh.conv7x7_3])
        self.shuffle = ssh.shuffle if shuffle else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3, mid = self.stage_input(x)
        branch5, mid7 = self.stage_mid(mid)
        (branch7,) = self.stage_last(mid7)
        out = F.relu(torch.cat([branch3, branch5, branch7], dim=1))
        return self.shuffle(out) if self.shuffle is not None else out


def use_native_deform_op(model: nn.Module, op: NativeDeformOp) -> nn.Module:
    """Make every `FusedStage` under `model` call `op` (a runtime's DCN op, for export); returns `model`."""
    for module in model.modules():
        if isinstance(module, FusedStage):
            module.native = op
    return model
