"""Computation that used to sit in the Heatmaps and Models pages, now in eval/ and tested here."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.boxes.postprocess import Detections
from dashboard.logic.model_summary import PART_LABELS, parameter_table, part_pivot
from eval.attention.drawing import fit_image, scale_detections


def test_fit_image_downscales_the_long_side_only_when_needed() -> None:
    rgb = np.zeros((300, 1200, 3), np.uint8)
    out, scale = fit_image(rgb, 600)
    assert out.shape == (150, 600, 3) and scale == 0.5
    same, one = fit_image(rgb, 1200)
    assert same is rgb and one == 1.0
    tiny, s = fit_image(np.zeros((1, 4000, 3), np.uint8), 100)
    assert tiny.shape == (1, 100, 3) and s == 0.025  # never a zero-sized side


def test_scale_detections_scales_boxes_and_landmarks_not_scores() -> None:
    dets = Detections(boxes=np.array([[10.0, 20.0, 30.0, 40.0]]), scores=np.array([0.9]),
                      landmarks=np.arange(10, dtype=float)[None])
    out = scale_detections(dets, 0.5)
    np.testing.assert_allclose(out.boxes, [[5, 10, 15, 20]])
    np.testing.assert_allclose(out.landmarks, np.arange(10)[None] * 0.5)
    np.testing.assert_array_equal(out.scores, dets.scores)


def test_part_pivot_orders_parts_and_models_and_adds_the_total() -> None:
    long = pd.DataFrame({"model": ["b", "b", "a", "a"], "part": ["x", "y", "x", "y"], "v": [1, 2, 10, 20]})
    wide = part_pivot(long, "v")
    assert list(wide.columns) == ["b", "a"] and list(wide.index) == ["x", "y", "total"]
    assert wide.loc["total"].tolist() == [3, 30]


def test_part_pivot_total_is_the_model_total() -> None:
    wide = part_pivot(parameter_table(("cbam", "none")), "params")
    assert wide.loc["total", "cbam"] == 488_664 and wide.loc["total", "none"] == 475_735
    assert list(wide.index[:-1]) == list(PART_LABELS.values())
