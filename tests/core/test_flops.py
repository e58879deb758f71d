"""core.flops: totals, per-part split, and the analytic deformable-conv term."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from core.factory import build_model
from core.flops import count_flops, deform_conv_flops
from core.layers.deform_conv import ModulatedDeformConv2d

NAMES = ("cbam", "eca_cbam", "eca_cbam_parallel", "none")


@pytest.fixture(scope="module")
def reports() -> dict:
    return {n: count_flops(n) for n in NAMES}


def test_positive_and_parts_sum_to_total(reports: dict) -> None:
    for rep in reports.values():
        assert rep.total > 1e9 and rep.counted > 0 and rep.deform_analytic > 0
        halves = {k: v for k, v in rep.parts.items() if k != "attention"}
        assert sum(halves.values()) == rep.total
        assert rep.parts["attention"] == rep.parts["attention_backbone"] + rep.parts["attention_bifpn"]
        assert len(rep.deform_layers) == 15  # 5 DCNs x 3 SSH levels


def test_parallel_equals_sequential_and_none_is_lowest(reports: dict) -> None:
    assert reports["eca_cbam_parallel"].total == reports["eca_cbam"].total
    assert reports["eca_cbam_parallel"].parts == reports["eca_cbam"].parts
    assert reports["none"].parts["attention"] == 0
    assert reports["none"].total < min(reports[n].total for n in NAMES if n != "none")
    assert reports["eca_cbam"].total < reports["cbam"].total  # ECA 1-D conv is cheaper than CBAM's MLP
    shared = ("backbone", "bifpn", "ssh", "heads")
    assert {reports["cbam"].parts[p] for p in shared} == {reports["none"].parts[p] for p in shared}


def test_instance_and_name_agree_and_scale_with_input() -> None:
    assert count_flops(build_model("eca_cbam")).total == count_flops("eca_cbam").total
    small, big = count_flops("none", (320, 320)), count_flops("none", (640, 640))
    assert 3.5 < big.total / small.total < 4.5


def test_weighted_sum_term_matches_counter_on_gather_kernel() -> None:
    """The grid_sample kernel does the weighted sum as a matmul the counter does see: same number."""
    layer = ModulatedDeformConv2d(13, 26, kernel="grid_sample")
    x = torch.randn(1, 13, 20, 24)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        layer(x)
    offset_conv = 2 * 13 * 9 * 27 * 20 * 24
    matmul = counter.get_total_flops() - offset_conv
    assert matmul == 2 * 13 * 9 * 26 * 20 * 24
    assert deform_conv_flops(13, 26, 20, 24) == matmul + 8 * 13 * 9 * 20 * 24
