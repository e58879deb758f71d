"""The `retinaface_mnet` baseline: RetinaFace-mobilenet0.25 from the project's own parts.

Known answers derived from the reference (biubug6/Pytorch_Retinaface, models/net.py and
models/retinaface.py): FPN with 1x1 laterals and 3x3 merges, LeakyReLU 0.1 (64 channels), the top level
not merged; SSH with plain 3x3 convs split out/2, out/4, out/4; 1x1 heads; 426,608 parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import MODEL_CONFIGS, config_from_dict
from core.detector import AttentionUnavailableError
from core.factory import build_model, parameter_counts
from core.flops import count_flops
from core.layers.deform_conv import ModulatedDeformConv2d
from core.nets.fpn import FPN
from eval.deploy.bn_fold import prepare_for_inference
from tests.conftest import randomize_batchnorm


@pytest.fixture(scope="module")
def baseline() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(build_model("retinaface_mnet").eval())


def test_parameter_count_per_part(baseline):
    counts = baseline.get_parameter_count()
    assert counts["total"] == counts["trainable"] == 426_608
    assert counts["backbone"] == 213_072
    assert counts["fpn"] == counts["neck"] == 103_040
    assert counts["bifpn"] == 0 and counts["attention"] == 0
    assert counts["ssh"] == 3 * 34_752
    assert [sum(p.numel() for p in m.parameters()) for m in baseline.ssh] == [34_752] * 3
    assert counts["heads"] == 6_240
    assert sum(counts[p] for p in ("backbone", "attention", "bifpn", "fpn", "ssh", "heads")) == counts["total"]
    assert parameter_counts("retinaface_mnet") == counts


def test_fpn_layer_shapes_as_reference():
    fpn = FPN((64, 128, 256), 64)
    shapes = {k: tuple(v.shape) for k, v in fpn.state_dict().items() if k.endswith("0.weight")}
    # laterals: 1x1 conv without bias (output1..3 in the reference); merges: 3x3 without bias (merge1/2)
    assert shapes == {"lateral.0.0.weight": (64, 64, 1, 1), "lateral.1.0.weight": (64, 128, 1, 1),
                      "lateral.2.0.weight": (64, 256, 1, 1), "merge.0.0.weight": (64, 64, 3, 3),
                      "merge.1.0.weight": (64, 64, 3, 3)}
    slopes = {m.negative_slope for m in fpn.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.1}  # out_channels <= 64
    assert {m.negative_slope for m in FPN((64, 128, 256), 128).modules() if isinstance(m, nn.LeakyReLU)} == {0.0}


def test_fpn_top_down_wiring():
    """P5 = lateral(C5); P4 = merge(lateral(C4) + up(P5)); P3 = merge(lateral(C3) + up(P4)), nearest."""
    fpn = randomize_batchnorm(FPN((64, 128, 256), 64)).eval()
    c3, c4, c5 = torch.randn(1, 64, 13, 17), torch.randn(1, 128, 7, 9), torch.randn(1, 256, 4, 5)
    with torch.no_grad():
        p3, p4, p5 = fpn([c3, c4, c5])
        lat = [conv(c) for conv, c in zip(fpn.lateral, (c3, c4, c5), strict=True)]
        torch.testing.assert_close(p5, lat[2])
        want4 = fpn.merge[1](lat[1] + F.interpolate(lat[2], size=(7, 9), mode="nearest"))
        torch.testing.assert_close(p4, want4)
        want3 = fpn.merge[0](lat[0] + F.interpolate(want4, size=(13, 17), mode="nearest"))
        torch.testing.assert_close(p3, want3)
    assert p3.shape == (1, 64, 13, 17) and p5.shape == (1, 64, 4, 5)


def test_ssh_is_plain_conv_without_shuffle(baseline):
    ssh = baseline.ssh[0]
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in baseline.modules())
    assert ssh.shuffle_groups == 1
    widths = [ssh.conv3x3.conv.out_channels, ssh.conv5x5_1.conv.out_channels, ssh.conv7x7_3.conv.out_channels]
    assert widths == [32, 16, 16]
    assert {ssh.conv5x5_1.leaky, ssh.conv7x7_2.leaky} == {0.1} and ssh.conv3x3.leaky is None
    x = torch.randn(1, 64, 6, 7)
    with torch.no_grad():
        out = ssh(x)
        branch3 = ssh.conv3x3(x)
    # no shuffle: the first half of the output is the 3x3 branch after ReLU, in place
    torch.testing.assert_close(out[:, :32], F.relu(branch3))


def test_heads_are_1x1_per_level(baseline):
    convs = [m for m in baseline.heads.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9 and {c.kernel_size for c in convs} == {(1, 1)}
    assert sorted(c.out_channels for c in convs) == [4] * 3 + [8] * 3 + [20] * 3


@pytest.mark.parametrize("hw", [(640, 640), (333, 517)])
def test_forward_shapes_and_detect(baseline, hw):
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        loc, conf, landm = baseline(x)
    anchors = baseline.anchors_for(hw, x.device)
    assert loc.shape == (1, anchors.shape[0], 4) and conf.shape[-1] == 2 and landm.shape[-1] == 10
    image = np.random.default_rng(0).integers(0, 255, size=(*hw, 3), dtype=np.uint8)
    dets = baseline.detect(image, conf_thresh=0.0)
    assert len(dets) > 0 and dets.boxes.shape[1] == 4


def test_no_attention_heatmaps(baseline, rgb_image):
    assert not baseline.has_attention and baseline.attention_blocks() == {}
    with pytest.raises(AttentionUnavailableError, match="baseline without attention"):
        baseline.get_attention_heatmaps(rgb_image)


def test_checkpoint_round_trip_and_inference_copy(tmp_path, baseline):
    path = tmp_path / "r.pth"
    save_checkpoint(path, baseline)
    loaded, meta = load_checkpoint(path, expected_name="retinaface_mnet")
    assert config_from_dict(meta["config"]) == MODEL_CONFIGS["retinaface_mnet"]
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref = baseline(x)
        for out in (loaded.eval()(x), prepare_for_inference(baseline)(x)):
            for a, b in zip(ref, out, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_flops_parts_sum_and_no_dcn():
    rep = count_flops("retinaface_mnet")
    assert rep.deform_analytic == 0 and rep.parts["bifpn"] == 0 and rep.parts["fpn"] > 0
    assert sum(v for k, v in rep.parts.items() if k != "attention") == rep.total


def test_unknown_neck_is_refused():
    from dataclasses import replace

    from core.detector import FeatherFace

    with pytest.raises(ValueError, match="unknown neck 'pan'"):
        FeatherFace(replace(MODEL_CONFIGS["retinaface_mnet"], neck="pan"))
