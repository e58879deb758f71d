"""Inference-time rewrites that keep the function but cut CPU latency: BN folding, channels-last.

Each is checked for equal outputs in tests/test_inference_opt.py and timed in
benchmarks/bench_model_latency.py.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from core.detector import FeatherFace
from core.layers.deform_conv import ModulatedDeformConv2d

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


def prepare_for_inference(
    model: FeatherFace, fold_bn: bool = True, channels_last: bool | None = None
) -> FeatherFace:
    """The latency-optimised eval copy used by the predictor and the latency benchmark.

    `channels_last=None` means: on for a CPU model (8-22% faster at 320-640 px, 1 or 2 threads, see
    benchmarks/results/model_latency.txt), off on CUDA, where it has not been measured.
    """
    out = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    if channels_last is None:
        channels_last = next(out.parameters()).device.type == "cpu"
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out
