"""The four variants: parameter counts, shapes, and attention masks captured from the real forward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.boxes.anchors import generate_anchors
from core.config import MODEL_CONFIGS
from core.detector import LEVELS, STAGES, AttentionUnavailableError
from core.factory import build_model, parameter_counts
from core.layers.attention import ParallelAttention, SequentialAttention
from core.layers.eca import EcaGate, eca_kernel_size

PUBLISHED = {"cbam": 488_664, "eca_cbam": 476_345, "eca_cbam_parallel": 476_345}


@pytest.mark.parametrize("name,total", sorted(PUBLISHED.items()))
def test_parameter_counts_match_published(models, name, total):
    counts = models[name].get_parameter_count()
    assert counts["total"] == total
    assert counts["trainable"] == total
    assert counts["backbone"] == 213_072
    assert counts["bifpn"] == 84_010
    assert counts["ssh"] == 173_565
    assert counts["heads"] == 5_088
    parts = sum(counts[p] for p in ("backbone", "attention", "bifpn", "ssh", "heads"))
    assert parts == counts["total"]


def test_attention_breakdown(models):
    cbam = models["cbam"].get_parameter_count()
    assert (cbam["attention_backbone"], cbam["attention_bifpn"], cbam["attention"]) == (11_528, 1_401, 12_929)
    for name in ("eca_cbam", "eca_cbam_parallel"):
        assert models[name].get_parameter_count()["attention"] == 610
    assert models["none"].get_parameter_count()["attention"] == 0


def test_eca_kernel_sizes():
    assert [eca_kernel_size(c) for c in (52, 64, 128, 256)] == [3, 3, 5, 5]
    gates = [m for m in build_model("eca_cbam").modules() if isinstance(m, EcaGate)]
    assert sum(p.numel() for g in gates for p in g.parameters()) == 22


@pytest.mark.parametrize("hw", [(640, 640), (333, 517), (97, 61), (32, 32)])
def test_output_shapes_match_anchors(models, hw):
    x = torch.randn(2, 3, *hw)
    anchors = generate_anchors(hw)
    expected = sum(math.ceil(hw[0] / s) * math.ceil(hw[1] / s) * 2 for s in (8, 16, 32))
    assert anchors.shape == (expected, 4)
    for model in models.values():
        with torch.no_grad():
            loc, conf, landm = model(x)
        assert loc.shape == (2, expected, 4)
        assert conf.shape == (2, expected, 2)
        assert landm.shape == (2, expected, 10)


@pytest.mark.parametrize("name", ["cbam", "eca_cbam", "eca_cbam_parallel"])
def test_heatmap_shapes_and_range(models, name):
    image = np.random.default_rng(1).integers(0, 255, size=(333, 517, 3), dtype=np.uint8)
    maps = models[name].get_attention_heatmaps(image)
    assert set(maps) == {"backbone", "bifpn"}
    assert set(maps["backbone"]) == set(STAGES)
    assert set(maps["bifpn"]) == set(LEVELS)
    channels = dict(zip(STAGES + LEVELS, (64, 128, 256, 52, 52, 52), strict=True))
    strides = dict(zip(STAGES + LEVELS, (8, 16, 32, 8, 16, 32), strict=True))
    for group in maps.values():
        for level, masks in group.items():
            hw = (math.ceil(333 / strides[level]), math.ceil(517 / strides[level]))
            assert masks["channel_mask"].shape == (channels[level],)
            assert masks["spatial_mask"].shape == hw
            assert masks["hybrid_mask"].shape == hw
            for mask in masks.values():
                assert mask.dtype == np.float32
                assert mask.min() >= 0.0 and mask.max() <= 1.0


def _capture_block_io(model, image):
    """Hook every attention block's input and output during the heatmap forward pass."""
    io = {}
    handles = [
        block.register_forward_hook(lambda _m, inp, out, key=key: io.__setitem__(key, (inp[0], out)))
        for key, block in model.attention_blocks().items()
    ]
    try:
        maps = model.get_attention_heatmaps(image)
    finally:
        for h in handles:
            h.remove()
    return maps, io


@pytest.mark.parametrize("name", ["cbam", "eca_cbam", "eca_cbam_parallel"])
def test_hybrid_mask_is_the_mask_applied(models, name, rgb_image):
    model = models[name]
    raw = {}
    hooks = [
        block.hybrid_tap.register_forward_hook(lambda _m, _i, out, key=key: raw.__setitem__(key, out))
        for key, block in model.attention_blocks().items()
    ]
    try:
        maps, io = _capture_block_io(model, rgb_image)
    finally:
        for h in hooks:
            h.remove()
    for key, (block_in, block_out) in io.items():
        hybrid3d = raw[key]
        assert torch.equal(block_out, block_in * hybrid3d), key
        group = "backbone" if key in STAGES else "bifpn"
        reported = maps[group][key]
        np.testing.assert_allclose(reported["hybrid_mask"], hybrid3d[0].mean(0).numpy(), rtol=1e-6)
        # the applied mask factorises into the reported channel and spatial masks
        outer = reported["channel_mask"][:, None, None] * reported["spatial_mask"][None]
        np.testing.assert_allclose(hybrid3d[0].numpy(), outer, rtol=1e-5, atol=1e-7)


def test_sequential_and_parallel_differ_where_they_should(models, rgb_image):
    seq, par = build_model("eca_cbam").eval(), build_model("eca_cbam_parallel").eval()
    par.load_state_dict(seq.state_dict())  # same weights: only the wiring differs
    assert isinstance(seq.attention_blocks()["stage1"], SequentialAttention)
    assert isinstance(par.attention_blocks()["stage1"], ParallelAttention)
    seq_maps, seq_io = _capture_block_io(seq, rgb_image)
    par_maps, par_io = _capture_block_io(par, rgb_image)
    # stage1 sees the same input in both, so the ECA channel masks agree ...
    np.testing.assert_array_equal(seq_maps["backbone"]["stage1"]["channel_mask"],
                                  par_maps["backbone"]["stage1"]["channel_mask"])
    # ... but the spatial mask comes from X (parallel) versus X * M_c (sequential)
    assert not np.allclose(seq_maps["backbone"]["stage1"]["spatial_mask"],
                           par_maps["backbone"]["stage1"]["spatial_mask"])
    block = par.attention_blocks()["stage1"]
    x = par_io["stage1"][0]
    with torch.no_grad():
        np.testing.assert_allclose(par_maps["backbone"]["stage1"]["spatial_mask"],
                                   block.spatial_gate(x)[0, 0].numpy(), rtol=1e-6)
        seq_block = seq.attention_blocks()["stage1"]
        refined = x * seq_block.channel_gate(x)
        np.testing.assert_allclose(seq_maps["backbone"]["stage1"]["spatial_mask"],
                                   seq_block.spatial_gate(refined)[0, 0].numpy(), rtol=1e-6)
    assert not torch.allclose(seq_io["P5"][1], par_io["P5"][1])


def test_none_model_has_no_masks(models, rgb_image):
    model = models["none"]
    assert not model.has_attention
    assert model.attention_blocks() == {}
    with pytest.raises(AttentionUnavailableError, match="no-attention ablation"):
        model.get_attention_heatmaps(rgb_image)
    # Detection still runs end to end: NMS always keeps the best-scoring anchor.
    dets = model.detect(rgb_image, conf_thresh=0.0)
    assert len(dets) > 0 and dets.boxes.shape == (len(dets), 4) and dets.landmarks.shape == (len(dets), 10)
    with torch.no_grad():
        _, conf, _ = model(model.prepare_image(rgb_image)[1])
    assert dets.scores[0] == pytest.approx(float(conf.softmax(-1)[0, :, 1].max()), rel=1e-5)


def test_factory_rejects_unknown_name():
    with pytest.raises(KeyError, match="choose one of"):
        build_model("se")
    assert set(MODEL_CONFIGS) == {"cbam", "eca_cbam", "eca_cbam_parallel", "none", "retinaface_mnet"}


def test_attention_is_the_only_difference_between_variants():
    keys = {name: set(build_model(name).state_dict()) for name in MODEL_CONFIGS}
    shared = keys["none"]
    for name in ("cbam", "eca_cbam", "eca_cbam_parallel"):
        extra = keys[name] - shared
        assert shared <= keys[name]
        assert all("attention" in k for k in extra)
    assert keys["eca_cbam"] == keys["eca_cbam_parallel"]


def test_meta_device_parameter_counts_equal_real_ones(models):
    for name, model in models.items():
        assert parameter_counts(name) == model.get_parameter_count()
