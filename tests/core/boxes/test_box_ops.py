"""Anchors, box/landmark coding, matching and decode + NMS on known boxes."""

from __future__ import annotations

import numpy as np
import torch

from core.boxes.anchors import generate_anchors
from core.boxes.coder import center_to_corners, decode_boxes, decode_landmarks, encode_boxes, encode_landmarks
from core.boxes.matching import flatten_targets, match_anchors
from core.boxes.postprocess import postprocess

VAR = (0.1, 0.2)


def test_anchor_layout_matches_priorbox():
    anchors = generate_anchors((64, 64))
    # first level: 8x8 cells, 2 anchors (16 and 32 px) per cell, row-major
    assert anchors.shape == (8 * 8 * 2 + 4 * 4 * 2 + 2 * 2 * 2, 4)
    torch.testing.assert_close(anchors[0], torch.tensor([4 / 64, 4 / 64, 16 / 64, 16 / 64]))
    torch.testing.assert_close(anchors[1], torch.tensor([4 / 64, 4 / 64, 32 / 64, 32 / 64]))
    torch.testing.assert_close(anchors[2], torch.tensor([12 / 64, 4 / 64, 16 / 64, 16 / 64]))


def test_encode_decode_round_trip():
    anchors = generate_anchors((96, 128))[:50]
    boxes = center_to_corners(anchors) + torch.linspace(-0.02, 0.02, 50)[:, None]
    lms = torch.rand(50, 10)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, anchors, VAR), anchors, VAR), boxes,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decode_landmarks(encode_landmarks(lms, anchors, VAR), anchors, VAR), lms,
                               atol=1e-5, rtol=1e-5)


def test_match_assigns_face_to_its_anchor_and_forces_best():
    anchors = generate_anchors((64, 64))
    exact = center_to_corners(anchors[10:11])
    small = torch.tensor([[23.5, 23.5, 32.5, 32.5]]) / 64  # 9 px face: best IoU 81/256, under 0.35
    truths = torch.cat([exact, small])
    labels = torch.tensor([1.0, -1.0])
    lms = torch.zeros(2, 10)
    rows = torch.cat([truths, lms, labels[:, None]], dim=1)
    loc, conf, _ = (t[0] for t in match_anchors(flatten_targets([rows]), anchors))
    assert conf[10] == 1
    assert torch.allclose(loc[10], torch.zeros(4), atol=1e-6)
    assert conf[54] == -1  # the small face still gets its best anchor (label -1: no landmarks)
    assert (conf == -1).sum() == 1
    empty = match_anchors(flatten_targets([torch.zeros(0, 15)]), anchors)
    assert (empty[1] == 0).all() and empty[1].shape == (1, anchors.shape[0])


def test_decode_and_nms_on_known_boxes():
    hw = (64, 64)
    anchors = generate_anchors(hw)
    a, b, c = 10, 11, 100  # a and b share a cell (16 and 32 px anchors), c is elsewhere
    target = center_to_corners(anchors[[a, a, c]])
    loc = torch.zeros(anchors.shape[0], 4)
    loc[[a, b, c]] = encode_boxes(target, anchors[[a, b, c]], VAR)
    logits = torch.full((anchors.shape[0], 2), 0.0)
    logits[:, 0] = 5.0  # background everywhere ...
    logits[a] = torch.tensor([0.0, 4.0])  # ... except three confident faces, two of them duplicates
    logits[b] = torch.tensor([0.0, 3.0])
    logits[c] = torch.tensor([0.0, 2.0])
    landm = torch.zeros(anchors.shape[0], 10)
    dets = postprocess(loc, logits, landm, anchors, hw, VAR, conf_thresh=0.5, nms_thresh=0.4)
    assert len(dets) == 2
    expected = (target[[0, 2]] * 64).numpy()
    np.testing.assert_allclose(dets.boxes, expected, atol=1e-3)
    assert dets.scores[0] > dets.scores[1]
    np.testing.assert_allclose(dets.landmarks[0].reshape(5, 2), np.tile(anchors[a, :2].numpy() * 64, (5, 1)),
                               atol=1e-3)
