"""The faster CPU formulations compute the same function as the reference ones."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from core.factory import build_model
from core.inference import fold_batchnorm, prepare_for_inference
from core.layers.deform_conv import ModulatedDeformConv2d, deform_conv2d_grid_sample
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


def test_model_outputs_equal_across_dcn_kernels():
    model = realistic_model("eca_cbam_parallel")
    x = torch.randn(1, 3, 96, 80)
    outs = {}
    for kernel in ("torchvision", "grid_sample"):
        for m in model.modules():
            if isinstance(m, ModulatedDeformConv2d):
                m.kernel = kernel
        with torch.no_grad():
            outs[kernel] = model(x)
    for a, b in zip(outs["torchvision"], outs["grid_sample"], strict=True):
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
