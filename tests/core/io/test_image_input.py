"""Bad or unusual images are converted or rejected with a clear message, never a torch crash."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from core.data.augment import EvalTransform
from core.factory import build_model
from core.io.image_input import ImageInputError, to_rgb_uint8
from core.io.image_io import decode_upload
from eval.widerface.predict import read_rgb


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


def test_model_input_equals_the_training_path_pixel_for_pixel(tmp_path: Path) -> None:
    """Inference must feed the network what training fed it: cv2's BGR read through EvalTransform.

    A coloured 37x53 file goes both ways; EvalTransform at the long side only pads (with the mean,
    which becomes 0), so the image region must match exactly. Without the RGB -> BGR flip in
    `rgb_to_model_tensor` the red and blue planes trade places and this fails.
    """
    height, width = 37, 53
    rng = np.random.default_rng(0)
    rgb = np.dstack([
        np.tile(np.linspace(0, 255, width), (height, 1)),
        np.tile(np.linspace(255, 0, height)[:, None], (1, width)),
        rng.integers(0, 256, (height, width)),
    ]).astype(np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)

    train_input, _ = EvalTransform(max(height, width))(cv2.imread(str(path), cv2.IMREAD_COLOR), np.zeros((0, 15)))
    assert np.all(train_input[:, height:, :] == 0)  # padding carries the mean, i.e. nothing
    model = build_model("none")
    for source, decoded in (("upload", decode_upload(path.read_bytes(), "colour.png")), ("predict", read_rgb(path))):
        _, tensor = model.prepare_image(decoded)
        assert tensor.shape == (1, 3, height, width)
        np.testing.assert_array_equal(tensor[0].numpy(), train_input[:, :height, :width], err_msg=source)
