"""Bad or unusual images are converted or rejected with a clear message, never a torch crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.image_input import ImageInputError, to_rgb_uint8


def test_conversions():
    gray = np.full((10, 12), 7, dtype=np.uint8)
    assert to_rgb_uint8(gray).shape == (10, 12, 3)
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    assert to_rgb_uint8(rgba).shape == (10, 12, 3)
    deep = np.full((4, 4, 3), 65535, dtype=np.uint16)
    assert to_rgb_uint8(deep).max() == 255
    flt = np.full((4, 4, 3), 0.5, dtype=np.float32)
    assert to_rgb_uint8(flt)[0, 0, 0] == 128
    chw = torch.zeros(3, 8, 9)
    assert to_rgb_uint8(chw).shape == (8, 9, 3)
    single = np.zeros((5, 6, 1), dtype=np.uint8)
    assert to_rgb_uint8(single).shape == (5, 6, 3)


@pytest.mark.parametrize(
    "bad,match",
    [
        ("not an image", "expected an image array"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
        (np.zeros((4, 4, 3), dtype=np.complex64), "unsupported image dtype"),
        (np.zeros((4, 4, 5), dtype=np.uint8), "expected HxW"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "expected HxW"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (torch.zeros(2, 3, 8, 8), "batch"),
    ],
)
def test_rejections(bad, match):
    with pytest.raises(ImageInputError, match=match):
        to_rgb_uint8(bad)


def test_detect_on_unusual_inputs(models):
    model = models["eca_cbam"]
    for image in (np.zeros((37, 53), dtype=np.uint8), np.zeros((37, 53, 4), dtype=np.uint8)):
        dets = model.detect(image, conf_thresh=0.0)
        assert dets.boxes.shape[1] == 4 and dets.landmarks.shape[1] == 10
    with pytest.raises(ImageInputError):
        model.detect(np.zeros((0, 0, 3), dtype=np.uint8))
