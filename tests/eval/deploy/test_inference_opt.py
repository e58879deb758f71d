"""The faster CPU formulations compute the same function as the reference ones."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from core.factory import build_model
from core.layers.deform_conv import ModulatedDeformConv2d, deform_conv2d_gather, deform_conv2d_grid_sample
from core.nets.ssh import SSH, FusedDeformSSH, FusedStage
from eval.deploy.bn_fold import fold_batchnorm, prepare_for_inference
from tests.conftest import randomize_batchnorm, realistic_model


@pytest.mark.parametrize("shape", [(2, 13, 7, 9, 13), (1, 52, 20, 24, 26), (1, 4, 1, 5, 3)])
def test_grid_sample_dcn_equals_torchvision(shape):
    n, c, h, w, o = shape
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(n, 18, h, w, dtype=torch.float64) * 3).requires_grad_()
    mask = torch.rand(n, 9, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(o, c, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(o, dtype=torch.float64)
    ref = deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    fast = deform_conv2d_grid_sample(x, offset, mask, weight, bias, padding=1)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    grads_ref = torch.autograd.grad(ref.sum(), (x, mask, weight))
    grads_fast = torch.autograd.grad(fast.sum(), (x, mask, weight))
    for a, b in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("shape", [(2, 13, 7, 9, 13), (1, 52, 20, 24, 26), (1, 4, 1, 5, 3)])
def test_gather_dcn_equals_torchvision(shape):
    """Offsets of several pixels (many taps outside the image, some exactly on its border) and a learned
    mask: values and gradients of the tap-table + embedding_bag kernel equal torchvision's."""
    n, c, h, w, o = shape
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(n, 18, h, w, dtype=torch.float64) * 3
    offset[0, 8, 0, 0], offset[0, 9, 0, 0], offset[-1, 8, -1, -1] = -1.0, float(w), 1.0  # centre tap on y=-1, x=W, y=H
    offset.requires_grad_()
    mask = torch.rand(n, 9, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(o, c, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(o, dtype=torch.float64)
    ref = deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    fast = deform_conv2d_gather(x, offset, mask, weight, bias, padding=1)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    grads_ref = torch.autograd.grad(ref.sum(), (x, offset, mask, weight))
    grads_fast = torch.autograd.grad(fast.sum(), (x, offset, mask, weight))
    for a, b in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_gather_kernel_refuses_other_than_same_padding():
    with pytest.raises(ValueError, match="padding"):
        deform_conv2d_gather(torch.zeros(1, 2, 4, 4), torch.zeros(1, 18, 4, 4), torch.zeros(1, 9, 4, 4),
                             torch.zeros(3, 2, 3, 3), padding=0)


def test_shuffle_permutation_is_the_shuffle():
    ssh = SSH(52, 52)
    x = torch.randn(2, 52, 3, 4)
    torch.testing.assert_close(ssh.shuffle(x), x[:, ssh.shuffle_permutation(52)], atol=0, rtol=0)
    assert not torch.equal(ssh.shuffle_permutation(52), torch.arange(52))


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_ssh_model_equals_plain_model(channels_last):
    """The inference copy (BN folded, 5 DCNs per SSH in 3 fused stages, shuffle folded into the heads)
    against the plain eval model, with large offsets (taps far outside the image) at an odd size."""
    model = realistic_model("eca_cbam_parallel")
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, ModulatedDeformConv2d):
            m.offset_mask.weight.data.normal_(0, 0.3, generator=gen)
            m.offset_mask.bias.data.normal_(0, 2.0, generator=gen)
    x = torch.randn(2, 3, 75, 101) * 60
    fast = prepare_for_inference(model, channels_last=channels_last)
    assert sum(isinstance(m, FusedDeformSSH) for m in fast.modules()) == 3
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in fast.modules())
    with torch.no_grad():
        ref = model(x)
        offsets = model.ssh[0].conv3x3.conv.offset_mask(model.bifpn_attention[0](model.neck(
            [a(f) for a, f in zip(model.backbone_attention, model.body(x), strict=True)])[0]))[:, :18]
        got = fast(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    assert float(offsets.abs().max()) > 5
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_fused_stage_needs_folded_batchnorm():
    with pytest.raises(ValueError, match="folding BatchNorm"):
        FusedStage([SSH(16, 16).conv3x3])
    with pytest.raises(ValueError, match="fold_bn"):
        prepare_for_inference(realistic_model("none"), fold_bn=False, fuse_dcn=True)


def test_model_outputs_equal_across_dcn_kernels():
    model = realistic_model("eca_cbam_parallel")
    x = torch.randn(1, 3, 96, 80)
    outs = {}
    for kernel in ("torchvision", "grid_sample", "gather"):
        for m in model.modules():
            if isinstance(m, ModulatedDeformConv2d):
                m.kernel = kernel
        with torch.no_grad():
            outs[kernel] = model(x)
    for kernel in ("grid_sample", "gather"):
        for a, b in zip(outs["torchvision"], outs[kernel], strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["cbam", "eca_cbam", "eca_cbam_parallel", "none"])
def test_folded_and_channels_last_models_match(name):
    model = randomize_batchnorm(build_model(name)).eval()
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        ref = model(x)
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        fast = prepare_for_inference(model, fold_bn=True, channels_last=True)
        for out in (folded(x), fast(x.contiguous(memory_format=torch.channels_last))):
            for a, b in zip(ref, out, strict=True):
                torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched
