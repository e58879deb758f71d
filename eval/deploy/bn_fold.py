"""Inference-time rewrites that keep the function but cut CPU latency: BN folding, the fused
deformable SSH (channel shuffle folded into the heads), channels-last.

Each is checked for equal outputs in tests/eval/deploy/test_inference_opt.py and timed in
benchmarks/bench_model_latency.py.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from core.detector import FeatherFace
from core.layers.deform_conv import ModulatedDeformConv2d
from core.nets.ssh import SSH, FusedDeformSSH

_CONV_LIKE = (nn.Conv2d, ModulatedDeformConv2d)


def fold_batchnorm(model: FeatherFace) -> FeatherFace:
    """Return an eval-mode copy where every BatchNorm directly following a conv is folded into it.

    A "direct follower" is the next child registered after the conv in the same parent module; every
    conv/BN pair in this project is applied back to back in that order (conv_bn, SeparableConvBlock,
    ContextConvBN, SpatialGate), which the equality test guards.
    """
    fused = copy.deepcopy(model).eval()
    for parent in fused.modules():
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            follows = isinstance(conv, _CONV_LIKE) and isinstance(bn, (nn.BatchNorm2d, nn.SyncBatchNorm))
            if follows and conv.weight.shape[0] == bn.num_features:
                _fold_into(conv, bn)
                setattr(parent, bn_name, nn.Identity())
    return fused


def _fold_into(conv: nn.Module, bn: nn.BatchNorm2d | nn.SyncBatchNorm) -> None:
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                        bn.weight, bn.bias)
    conv.weight = nn.Parameter(weight.detach(), requires_grad=False)
    conv.bias = nn.Parameter(bias.detach(), requires_grad=False)


def fuse_deformable_ssh(model: FeatherFace) -> FeatherFace:
    """In place on a BN-folded model: every deformable SSH becomes a `FusedDeformSSH` without its
    channel shuffle, and the shuffle's fixed permutation moves into the input channels of that level's
    1x1 heads (the SSH output's only reader), where it costs nothing. Returns `model` (unchanged when
    it is not a detector)."""
    if not isinstance(model, FeatherFace):
        return model
    for level, ssh in enumerate(model.ssh):
        if not isinstance(ssh, SSH) or not isinstance(ssh.conv3x3.conv, ModulatedDeformConv2d):
            continue
        channels = model.heads.bbox.convs[level].weight.shape[1]
        inverse = torch.argsort(ssh.shuffle_permutation(channels))
        for head in (model.heads.bbox, model.heads.cls, model.heads.landmark):
            conv = head.convs[level]
            conv.weight = nn.Parameter(conv.weight.detach()[:, inverse].contiguous(), requires_grad=False)
        model.ssh[level] = FusedDeformSSH(ssh, shuffle=False)
    return model


def prepare_for_inference(
    model: FeatherFace, fold_bn: bool = True, channels_last: bool | None = None, fuse_dcn: bool | None = None,
) -> FeatherFace:
    """The latency-optimised eval copy used by the predictor, the latency benchmark and every exporter.

    `channels_last=None` means: on for a CPU model (8-22% faster at 320-640 px, 1 or 2 threads, see
    benchmarks/results/model_latency.txt), off on CUDA, where it has not been measured. `fuse_dcn=None`
    means: fuse the deformable SSHs (`fuse_deformable_ssh`, needs `fold_bn`) on CPU, where it is 3-5x
    faster than the grid_sample kernel (benchmarks/results/deploy_latency.txt); on CUDA the module keeps
    torchvision's kernel, since the fused path's GPU speed is unmeasured (it runs there: device-agnostic).
    """
    out = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    param = next(out.parameters(), None)
    on_cpu = param is None or param.device.type == "cpu"
    if fuse_dcn is None:
        fuse_dcn = fold_bn and on_cpu
    if fuse_dcn:
        if not fold_bn:
            raise ValueError("fuse_dcn needs fold_bn: the fused SSH carries the folded BN in its weights")
        fuse_deformable_ssh(out)
    if channels_last is None:
        channels_last = on_cpu
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out
