"""core.boxes.postprocess.nms and the decode -> top-k -> NMS -> keep-top-k pipeline on known answers.

The oracle is a slow pure-python greedy NMS written from the rule RetinaFace's `py_cpu_nms` states:
areas and overlaps count pixels inclusively (+1), a box goes when its IoU with a kept box is strictly
above the threshold; equal scores are taken in index order.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from core.boxes.postprocess import nms, postprocess
from eval.widerface.predict import nms_method_arg


def oracle_nms(boxes: list[list[float]], scores: list[float], thresh: float, plus: float = 1.0) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    suppressed = [False] * len(scores)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        x1, y1, x2, y2 = boxes[i]
        area_i = (x2 - x1 + plus) * (y2 - y1 + plus)
        for j in order[pos + 1:]:
            if suppressed[j]:
                continue
            a1, b1, a2, b2 = boxes[j]
            w = max(0.0, min(x2, a2) - max(x1, a1) + plus)
            h = max(0.0, min(y2, b2) - max(y1, b1) + plus)
            inter = w * h
            if inter / (area_i + (a2 - a1 + plus) * (b2 - b1 + plus) - inter) > thresh:
                suppressed[j] = True
    return keep


def random_boxes(rng: np.random.Generator, n: int, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 60, size=(n, 2))
    wh = rng.uniform(1, 25, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, size=n)
    if integer:  # many exact IoU ties with the thresholds and many equal scores
        boxes, scores = np.round(boxes), np.round(scores * 20) / 20
    return boxes, scores


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("thresh", [0.3, 0.4, 0.5])
def test_equals_slow_oracle_on_random_boxes(integer, thresh):
    rng = np.random.default_rng(int(thresh * 10) + 7 * integer)
    for _ in range(4):
        boxes, scores = random_boxes(rng, 300, integer)
        b, s = torch.from_numpy(boxes), torch.from_numpy(scores)  # float64: the oracle's precision
        for pixel, plus in ((True, 1.0), (False, 0.0)):
            got = nms(b, s, thresh, pixel_inclusive=pixel).tolist()
            assert got == oracle_nms(boxes.tolist(), scores.tolist(), thresh, plus)


def test_plus_one_changes_the_answer_on_a_crafted_pair():
    # 10x10-pixel boxes shifted by 5 px: +1 rule IoU 50/150 = 0.333, continuous 36/126 = 0.286
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.3).tolist() == [0]
    assert nms(boxes, scores, 0.3, pixel_inclusive=False).tolist() == [0, 1]
    assert oracle_nms(boxes.tolist(), scores.tolist(), 0.3) == [0]


def test_many_boxes_keep_more_without_plus_one():
    boxes, scores = random_boxes(np.random.default_rng(3), 3000, integer=False)
    b, s = torch.from_numpy(boxes).float(), torch.from_numpy(scores).float()
    pixel, plain = nms(b, s, 0.4), nms(b, s, 0.4, pixel_inclusive=False)
    assert len(pixel) < len(plain)  # +1 areas overlap more, so fewer boxes survive


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_exactly_at_threshold_is_kept(dtype):
    # +1 areas: A is 10x10 = 100 px, B (inside A) is 10x4 = 40 px: IoU exactly 0.4
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 3.0]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert nms(boxes, scores, 0.4).tolist() == [0, 1]  # not strictly above: kept, as py_cpu_nms (<= thresh)
    assert nms(boxes, scores, 0.39).tolist() == [0]
    # continuous areas: 81 and 27, IoU 1/3 exactly in real numbers
    assert nms(boxes, scores, 1 / 3, pixel_inclusive=False).tolist() == [0, 1]
    assert nms(boxes, scores, 0.33, pixel_inclusive=False).tolist() == [0]


def test_score_ties_keep_the_lower_index_and_order_is_by_score():
    same = [0.0, 0.0, 9.0, 9.0]
    boxes = torch.tensor([same, [50.0, 50.0, 59.0, 59.0], same, same])
    scores = torch.tensor([0.5, 0.7, 0.5, 0.5])
    assert nms(boxes, scores, 0.4).tolist() == [1, 0]
    assert nms(boxes.flip(0), scores.flip(0), 0.4).tolist() == [2, 0]  # index order, not position in memory
    kept = nms(*map(torch.from_numpy, random_boxes(np.random.default_rng(1), 200, True)), 0.4)
    assert len(kept) == len(set(kept.tolist()))


def test_empty_input():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.4).tolist() == []


# Postprocess: thresholds and caps

def _outputs(boxes_px: list[list[float]], face_logits: list[float], hw=(100, 100)):
    """Anchors equal to the wanted boxes (centre form, normalised) and zero offsets: decode = the boxes."""
    b = torch.tensor(boxes_px) / torch.tensor([hw[1], hw[0], hw[1], hw[0]])
    anchors = torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], dim=1)
    logits = torch.stack([torch.zeros(len(face_logits)), torch.tensor(face_logits)], dim=1)
    n = len(face_logits)
    return torch.zeros(n, 4), logits, torch.zeros(n, 10), anchors, hw


def test_confidence_threshold_is_strict():
    # logits (0, 0) give a face score of exactly 0.5
    out = _outputs([[0, 0, 20, 20], [50, 50, 70, 70]], [0.0, 3.0])
    assert len(postprocess(*out, conf_thresh=0.5)) == 1
    assert len(postprocess(*out, conf_thresh=0.49)) == 2


def test_top_k_cuts_before_nms_and_keep_top_k_after():
    # A (best) and B overlap fully; C and D are apart and weaker
    boxes = [[0, 0, 20, 20], [0, 0, 20, 20], [50, 50, 70, 70], [30, 70, 40, 80]]
    out = _outputs(boxes, [4.0, 3.0, 2.0, 1.0])
    def scores(dets) -> list[float]:
        return [round(float(v), 4) for v in dets.scores]

    sig = [round(float(1 / (1 + np.exp(-v))), 4) for v in (4.0, 3.0, 2.0, 1.0)]
    assert scores(postprocess(*out, conf_thresh=0.0, top_k=0, keep_top_k=0)) == [sig[0], sig[2], sig[3]]
    assert scores(postprocess(*out, conf_thresh=0.0, top_k=2, keep_top_k=0)) == [sig[0]]  # C never reaches NMS
    assert scores(postprocess(*out, conf_thresh=0.0, top_k=3, keep_top_k=0)) == [sig[0], sig[2]]
    assert scores(postprocess(*out, conf_thresh=0.0, top_k=0, keep_top_k=2)) == [sig[0], sig[2]]
    assert scores(postprocess(*out, conf_thresh=0.0, top_k=4, keep_top_k=1)) == [sig[0]]


def test_postprocess_nms_method_and_bad_arguments():
    out = _outputs([[0, 0, 9, 9], [5, 0, 14, 9]], [3.0, 2.0])
    assert len(postprocess(*out, conf_thresh=0.0, nms_thresh=0.3)) == 1
    assert len(postprocess(*out, conf_thresh=0.0, nms_thresh=0.3, nms_method="torchvision")) == 2
    with pytest.raises(ValueError, match="unknown NMS method"):
        postprocess(*out, nms_method="soft")
    with pytest.raises(ValueError, match="0 = no cap"):
        postprocess(*out, top_k=-1)


def test_detect_defaults_to_the_pixel_rule(models, rgb_image, monkeypatch):
    import core.boxes.postprocess

    calls = []
    real = core.boxes.postprocess.nms
    monkeypatch.setattr(core.boxes.postprocess, "nms", lambda *a, **k: calls.append(k) or real(*a, **k))
    model = models["none"]
    model.detect(rgb_image, conf_thresh=0.0)
    model.detect(rgb_image, conf_thresh=0.0, nms_method="torchvision")
    assert calls == [{"pixel_inclusive": True}, {"pixel_inclusive": False}]


def test_cli_nms_argument():
    assert nms_method_arg("pixel") == "pixel" and nms_method_arg("torchvision") == "torchvision"
    with pytest.raises(argparse.ArgumentTypeError, match="--nms-thresh 0.4"):
        nms_method_arg("0.4")
    with pytest.raises(argparse.ArgumentTypeError, match="choose one of"):
        nms_method_arg("soft")
