"""Each variant computes the seed source's function (fokouarnaud/FeatherFace@f023145): outputs equal to 1e-4
those of the source's own classes, recorded in tests/fixtures/source_parity/ by
tests/fixtures/make_source_fixtures.py (its docstring says how), in eval and train mode, at an even and an
odd input size, with the source's weights mapped by `eval.deploy.source_weights`. And the source's trained
ECA-CBAM checkpoint finds the astronaut's face as the source's test script does."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_weights
from core.config import LEGACY_BUILD, get_config
from core.detector import FeatherFace
from core.factory import build_model
from eval.deploy.source_weights import SourceWeightsError, detect_source_variant, map_source_state_dict, project_key
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "source_parity"
VARIANTS = ("cbam", "eca_cbam", "eca_cbam_parallel", "none")
OUTPUTS = ("loc", "conf", "landmarks")
TOL = 1e-4
ATTENTION_PREFIXES = ("backbone_attention_", "bifpn_attention_")


@functools.cache
def fixture(variant: str) -> dict:
    return torch.load(FIXTURES / f"{variant}.pt", weights_only=True)


def source_state(variant: str) -> dict[str, torch.Tensor]:
    """The source state dict of a fixture, float32 (stored as float16, exactly representable)."""
    data = fixture(variant)
    if variant == "none":  # eca_cbam's weights less the attention tensors, with its own BN statistics
        state = {k: v for k, v in fixture("eca_cbam")["state_dict"].items() if not k.startswith(ATTENTION_PREFIXES)}
        state.update(data["state_dict"])
    else:
        state = dict(data["state_dict"])
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def model_from_source(variant: str, cfg_name: str | None = None, **overrides) -> FeatherFace:
    cfg = replace(get_config(cfg_name or variant), **overrides)
    model = build_model(cfg)
    load_weights(model, map_source_state_dict(source_state(variant)), source=f"{variant} fixture")
    return model


def max_diffs(model: FeatherFace, variant: str, mode: str, size: str) -> dict[str, float]:
    model.train(mode == "train")
    with torch.no_grad():
        ours = model(fixture(variant)["inputs"][size].float())
    expected = fixture(variant)["outputs"][f"{mode}_{size}"]
    assert [o.shape for o in ours] == [e.shape for e in expected]
    return {name: float((a - b).abs().max()) for name, a, b in zip(OUTPUTS, ours, expected, strict=True)}


def test_fixtures_are_small_and_weights_only():
    total = sum(p.stat().st_size for p in FIXTURES.glob("*.pt"))
    assert sorted(p.stem for p in FIXTURES.glob("*.pt")) == sorted(VARIANTS) and total < 6_000_000
    meta = fixture("eca_cbam")["meta"]
    assert meta["source"] == "fokouarnaud/FeatherFace@f023145" and meta["class"].endswith("FeatherFaceECAcbaM")
    state = source_state("eca_cbam")
    offsets = [v for k, v in state.items() if "offset_conv" in k]
    assert len(offsets) == 2 * 15 and all(v.abs().max() > 0 for v in offsets)  # sampling is fractional
    assert all(float(state[f"bifpn.{c}.{w}"].min()) > 0 for c in range(3) for w in ("p4_w1", "p3_w1", "p5_w2"))
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    assert all(v.abs().max() > 0 for v in means)  # trained-looking statistics, not the 0/1 of a fresh BN


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("size", ["even", "odd"])
def test_equals_the_source(variant, mode, size):
    diffs = max_diffs(model_from_source(variant), variant, mode, size)
    assert max(diffs.values()) <= TOL, f"{variant} {mode} {size}: max |ours - source| {diffs}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_mode_updates_running_statistics_as_the_source(variant):
    """BN momenta as the source's (0.1 default, 0.01 in the BiFPN and CBAM's spatial gate)."""
    model = model_from_source(variant)
    max_diffs(model, variant, "train", "even")
    own = model.state_dict()
    for key, expected in fixture(variant)["buffers_after_train"].items():
        torch.testing.assert_close(own[project_key(key)], expected, atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("option", sorted(LEGACY_BUILD))
def test_each_earlier_choice_is_an_option_that_changes_the_function(option):
    """Every setting in LEGACY_BUILD (this project's earlier choices) breaks parity on its own: the fixtures
    see each difference from the source, and the defaults are the source's."""
    variant = "cbam"  # the one variant every option affects (its spatial gate pools [max; mean])
    assert getattr(get_config(variant), option) != LEGACY_BUILD[option]
    model = model_from_source(variant, **{option: LEGACY_BUILD[option]})
    diffs = max_diffs(model, variant, "eval", "odd")
    assert max(diffs.values()) > 100 * TOL, f"{option}={LEGACY_BUILD[option]!r} still equals the source: {diffs}"


def test_sequential_and_parallel_fixtures_are_told_apart_only_by_their_function():
    """Their tensors have the same names (detection says "eca_cbam" for both), but the parallel weights in
    the sequential model do not give the parallel source's outputs."""
    assert [detect_source_variant(source_state(v)) for v in VARIANTS] == ["cbam", "eca_cbam", "eca_cbam", "none"]
    crossed = model_from_source("eca_cbam_parallel", cfg_name="eca_cbam")
    assert max(max_diffs(crossed, "eca_cbam_parallel", "eval", "even").values()) > 100 * TOL


def test_mapping_errors_name_the_problem():
    state = source_state("eca_cbam")
    with pytest.raises(SourceWeightsError, match="has no modulator_conv tensor"):
        map_source_state_dict({k: v for k, v in state.items() if k != "ssh2.conv5X5_2.0.modulator_conv.weight"})
    with pytest.raises(SourceWeightsError, match="'extra.layer.weight' has no counterpart"):
        map_source_state_dict({**state, "extra.layer.weight": torch.zeros(1)})
    with pytest.raises(SourceWeightsError, match="RetinaFace"):
        detect_source_variant({"module.fpn.output1.0.weight": torch.zeros(1)})
    prefixed = {"module." + k: v for k, v in state.items()} | {"body.total_ops": torch.zeros(1)}
    assert detect_source_variant(prefixed) == "eca_cbam"
    assert map_source_state_dict(prefixed).keys() == map_source_state_dict(state).keys()


# The source's trained checkpoint on a real photo
# Known answers made by running the SOURCE's code at f023145 on assets/samples/astronaut.png:
#   .venv/bin/python tests/fixtures/make_source_fixtures.py --source /tmp/ff_src \
#       --astronaut ../shared/reference/featherface_eca_cbam/featherface_eca_cbam_final.pth
# i.e. FeatherFaceECAcbaM(cfg_eca_cbam, phase='test') with the checkpoint, PriorBox, decode and py_cpu_nms in
# the loop of its test_widerface.py:202-272 with that script's defaults (cv2.imread, 1600-px short side capped
# at 2150 by cv2.INTER_LINEAR on the float image, confidence 0.02, top_k 5000, NMS 0.4, keep_top_k 750,
# --cpu); the script itself, run on a one-image folder, writes the same detection rounded to integers
# ("180 58 90 119 0.9984267"). At the original scale (no resize) the same code gives the 0.992.
SOURCE_SETTINGS = {"conf_thresh": 0.02, "nms_thresh": 0.4, "top_k": 5000, "keep_top_k": 750}
SOURCE_RESIZE = 1600 / 512
SOURCE_TOP = {  # resize -> (top box x1, y1, x2, y2 in original pixels, its score); 4 and 1 detections
    SOURCE_RESIZE: ((180.25633239746094, 58.588951110839844, 270.07000732421875, 177.84613037109375),
                    0.9984266757965088),
    1.0: ((180.34518432617188, 58.25944900512695, 271.78515625, 176.73672485351562), 0.9922312498092651),
}
CHECKPOINT = Path("reference") / "featherface_eca_cbam" / "featherface_eca_cbam_final.pth"


def trained_checkpoint() -> Path:
    for shared in (ROOT.parent / "shared", Path("/work/shared")):
        if (shared / CHECKPOINT).is_file():
            return shared / CHECKPOINT
    pytest.skip(f"the source's trained checkpoint ../shared/{CHECKPOINT} is not beside this checkout")


@pytest.mark.parametrize("resize", sorted(SOURCE_TOP))
def test_source_checkpoint_finds_the_astronaut_as_the_source_does(resize):
    import cv2

    state = torch.load(trained_checkpoint(), map_location="cpu", weights_only=True)
    variant = detect_source_variant(state)
    assert variant == "eca_cbam"
    model = build_model(variant).eval()
    load_weights(model, map_source_state_dict(state), source=str(CHECKPOINT))
    bgr = cv2.imread(str(ROOT / "assets" / "samples" / "astronaut.png"), cv2.IMREAD_COLOR)
    if resize != 1.0:  # the source's scaling, rounded to the uint8 image model.detect takes
        big = cv2.resize(bgr.astype(np.float32), None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
        bgr = np.clip(big + 0.5, 0, 255).astype(np.uint8)
    dets = model.detect(np.ascontiguousarray(bgr[..., ::-1]), **SOURCE_SETTINGS)
    box, score = SOURCE_TOP[resize]
    assert np.abs(dets.boxes[0] / resize - np.array(box)).max() <= 0.5, dets.boxes[0] / resize
    assert abs(float(dets.scores[0]) - score) <= 1e-3
    assert int((dets.scores > 0.5).sum()) == 1  # the face, and nothing else above 0.5
