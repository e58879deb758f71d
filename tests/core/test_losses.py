"""MultiBoxLoss: hand-built cases for each term, hard negative mining, a tiny overfit run, and the batched
matching + loss against the former per-image code (``tests/core/loss_oracle.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.boxes.anchors import generate_anchors
from core.boxes.coder import center_to_corners, encode_boxes, encode_landmarks
from core.boxes.matching import box_iou, flatten_targets, match_anchors
from core.data.augment import TrainTransform
from core.data.dataset import WiderFaceDetection, detection_collate
from core.factory import build_model
from core.losses import MultiBoxLoss, build_targets, hard_negative_mask
from core.synth.generate import generate_dataset
from tests.core.loss_oracle import build_targets_per_image, match_one_image, multibox_loss_per_image

pytestmark = pytest.mark.usefixtures("one_thread")

VARIANCES = (0.1, 0.2)
# Four anchors (cx, cy, w, h): two on the left half, two on the right, no overlap between halves.
ANCHORS = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.25, 0.75, 0.2, 0.2], [0.75, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2]])
LANDMARKS = [0.2, 0.2, 0.3, 0.2, 0.25, 0.25, 0.2, 0.3, 0.3, 0.3]


def face(box: list[float], landmarks: list[float] | None) -> list[float]:
    """One (15,) target row; label -1 and landmarks -1 when ``landmarks`` is None."""
    if landmarks is None:
        return [*box, *([-1.0] * 10), -1.0]
    return [*box, *landmarks, 1.0]


def predictions(batch: int, seed: int = 0, requires_grad: bool = False) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shapes = ((batch, 4, 4), (batch, 4, 2), (batch, 4, 10))
    return tuple(torch.randn(s, generator=gen).requires_grad_(requires_grad) for s in shapes)


def test_no_faces_gives_zero_loss_and_zero_gradients() -> None:
    loc, conf, landm = predictions(2, requires_grad=True)
    terms = MultiBoxLoss(VARIANCES)((loc, conf, landm), ANCHORS, [torch.zeros(0, 15), torch.zeros(0, 15)])
    assert all(t.item() == 0.0 for t in terms)
    terms.total.backward()  # must not fail (empty selections) and must not push anything
    for p in (loc, conf, landm):
        assert p.grad is not None and torch.all(p.grad == 0)


def test_image_without_positives_has_zero_box_loss_but_batch_still_trains_classes() -> None:
    """Image 0 has a face on anchor 0, image 1 has none: only image 0 contributes, normalised by 1."""
    loc, conf, landm = predictions(2)
    targets = [torch.tensor([face([0.15, 0.15, 0.35, 0.35], LANDMARKS)]), torch.zeros(0, 15)]
    terms = MultiBoxLoss(VARIANCES)((loc, conf, landm), ANCHORS, targets)

    loc_t = encode_boxes(targets[0][:, :4], ANCHORS[:1], VARIANCES)
    landm_t = encode_landmarks(targets[0][:, 4:14], ANCHORS[:1], VARIANCES)
    expected_box = F.smooth_l1_loss(loc[0, :1], loc_t, reduction="sum")
    expected_landm = F.smooth_l1_loss(landm[0, :1], landm_t, reduction="sum")
    # 1 positive -> 7 negatives capped at the other three anchors of image 0; image 1 mines none.
    expected_cls = F.cross_entropy(conf[0], torch.tensor([1, 0, 0, 0]), reduction="sum")
    torch.testing.assert_close(terms.box, expected_box)
    torch.testing.assert_close(terms.landmark, expected_landm)
    torch.testing.assert_close(terms.cls, expected_cls)
    torch.testing.assert_close(terms.total, 2.0 * expected_box + expected_cls + expected_landm)


def test_landmark_term_ignores_faces_without_landmarks() -> None:
    """A label -1 face is a positive for box/class but never for landmarks (its landmarks are -1)."""
    loc, conf, landm = predictions(1, requires_grad=True)
    with_lm = face([0.15, 0.15, 0.35, 0.35], LANDMARKS)
    without_lm = face([0.65, 0.65, 0.85, 0.85], None)
    terms = MultiBoxLoss(VARIANCES)((loc, conf, landm), ANCHORS, [torch.tensor([with_lm, without_lm])])

    landm_t = encode_landmarks(torch.tensor([LANDMARKS]), ANCHORS[:1], VARIANCES)
    expected_landm = F.smooth_l1_loss(landm[0, :1], landm_t, reduction="sum") / 1  # one face with landmarks
    torch.testing.assert_close(terms.landmark, expected_landm)
    loc_t = encode_boxes(torch.tensor([with_lm[:4], without_lm[:4]]), ANCHORS[[0, 3]], VARIANCES)
    torch.testing.assert_close(terms.box, F.smooth_l1_loss(loc[0, [0, 3]], loc_t, reduction="sum") / 2)

    terms.landmark.backward()
    assert torch.all(landm.grad[0, 3] == 0), "landmark gradient reached the anchor of a face without landmarks"
    assert torch.any(landm.grad[0, 0] != 0)


def test_only_faces_without_landmarks_gives_zero_landmark_loss() -> None:
    loc, conf, landm = predictions(1)
    terms = MultiBoxLoss(VARIANCES)((loc, conf, landm), ANCHORS, [torch.tensor([face([0.15, 0.15, 0.35, 0.35], None)])])
    assert terms.landmark.item() == 0.0
    assert terms.box.item() > 0 and terms.cls.item() > 0


def test_build_targets_labels() -> None:
    targets = [torch.tensor([face([0.15, 0.15, 0.35, 0.35], LANDMARKS), face([0.65, 0.65, 0.85, 0.85], None)])]
    _, conf_t, _ = build_targets(targets, ANCHORS)
    assert conf_t.tolist() == [[1, 0, 0, -1]]


def test_hard_negative_mining_keeps_three_hardest_per_positive_per_image() -> None:
    loss = torch.tensor([[9.0, 1.0, 5.0, 2.0, 7.0, 3.0, 0.5, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
    positive = torch.zeros_like(loss, dtype=torch.bool)
    positive[0, 0] = True  # the highest loss is a positive: it must not be counted as a negative
    mask = hard_negative_mask(loss, positive, 3)
    assert mask[0].nonzero().flatten().tolist() == [2, 4, 7]
    assert not mask[1].any(), "an image without positives mines no negatives"


def test_default_ratio_is_seven_negatives_per_positive() -> None:
    """RetinaFace's train.py: MultiBoxLoss(num_classes, 0.35, True, 0, True, 7, 0.35, False)."""
    criterion = MultiBoxLoss(VARIANCES)
    assert (criterion.neg_pos_ratio, criterion.overlap_threshold) == (7, 0.35)
    anchors = generate_anchors((64, 64))  # 168 anchors
    target = torch.cat([center_to_corners(anchors[10:11]), torch.zeros(1, 10), torch.ones(1, 1)], dim=1)
    gen = torch.Generator().manual_seed(0)
    preds = tuple(torch.randn(1, anchors.shape[0], k, generator=gen) for k in (4, 2, 10))
    _, conf_t, _ = build_targets([target], anchors)
    positives = int((conf_t != 0).sum())
    per_anchor = F.cross_entropy(preds[1][0], (conf_t[0] != 0).long(), reduction="none")
    for ratio in (3, 7):
        negatives = per_anchor.masked_fill(conf_t[0] != 0, -1).topk(ratio * positives).values.sum()
        expected = (per_anchor[conf_t[0] != 0].sum() + negatives) / positives
        torch.testing.assert_close(MultiBoxLoss(VARIANCES, neg_pos_ratio=ratio)(preds, anchors, [target]).cls, expected)
    torch.testing.assert_close(criterion(preds, anchors, [target]).cls,
                               MultiBoxLoss(VARIANCES, neg_pos_ratio=7)(preds, anchors, [target]).cls)


def test_match_iou_moves_the_positive_set() -> None:
    anchors = generate_anchors((64, 64))
    box = center_to_corners(anchors[10:11]) + torch.tensor([0.02, 0.0, 0.02, 0.0])  # IoU with anchor 10 < 1
    target = torch.cat([box, torch.zeros(1, 10), torch.ones(1, 1)], dim=1)
    loose = (build_targets([target], anchors, threshold=0.2)[1] != 0).sum()
    strict = (build_targets([target], anchors, threshold=0.5)[1] != 0).sum()
    assert loose > strict >= 1  # the best anchor is always kept


def test_negatives_are_capped_by_the_number_of_anchors() -> None:
    loss = torch.rand(1, 4)
    positive = torch.tensor([[True, True, False, False]])
    assert hard_negative_mask(loss, positive, 3).sum().item() == 2


@pytest.fixture(scope="module")
def tiny_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, list[torch.Tensor]]:
    root = generate_dataset(tmp_path_factory.mktemp("synth") / "ds", num_train=2, num_val=0, seed=0)
    dataset = WiderFaceDetection(root, "train", TrainTransform(128, rng=np.random.default_rng(0), photometric=False))
    return detection_collate([dataset[i] for i in range(2)])


def test_loss_decreases_when_overfitting_a_tiny_batch(tiny_batch: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    images, targets = tiny_batch
    torch.manual_seed(0)
    model = build_model("eca_cbam")
    anchors = model.anchors_for(images.shape[-2:], torch.device("cpu"))
    criterion = MultiBoxLoss(model.cfg.anchors.variances)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        terms = criterion(model(images), anchors, targets)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        history.append([t.item() for t in terms])
    first, last = np.array(history[0]), np.array(history[-1])
    assert np.isfinite(history).all()
    assert last[0] < 0.5 * first[0], f"total loss went {first[0]:.3f} -> {last[0]:.3f}"
    assert (last[1:] < first[1:]).all(), f"every term should fall: {first} -> {last}"


HAND_CASES = {
    "no faces": [torch.zeros(0, 15), torch.zeros(0, 15)],
    "one image empty": [torch.tensor([face([0.15, 0.15, 0.35, 0.35], LANDMARKS)]), torch.zeros(0, 15)],
    "with and without landmarks": [torch.tensor([face([0.15, 0.15, 0.35, 0.35], LANDMARKS),
                                                 face([0.65, 0.65, 0.85, 0.85], None)])],
    "only without landmarks": [torch.tensor([face([0.15, 0.15, 0.35, 0.35], None)])],
    "uneven counts": [torch.tensor([face([0.15, 0.15, 0.35, 0.35], LANDMARKS)]),
                      torch.tensor([face([0.65, 0.15, 0.85, 0.35], None), face([0.15, 0.65, 0.35, 0.85], LANDMARKS),
                                    face([0.6, 0.6, 0.9, 0.9], LANDMARKS)])],
}


def _loss_and_grads(fn, targets: list[torch.Tensor], anchors: torch.Tensor, seed: int = 0):
    preds = predictions(len(targets), seed, requires_grad=True) if anchors is ANCHORS else tuple(
        torch.randn(len(targets), anchors.shape[0], k, generator=torch.Generator().manual_seed(seed + k),
                    requires_grad=True) for k in (4, 2, 10))
    terms = fn(preds, anchors, targets)
    terms.total.backward()
    return terms, [p.grad for p in preds]


def assert_same_as_oracle(targets: list[torch.Tensor], anchors: torch.Tensor) -> None:
    """Targets and gradients bitwise equal (so training takes bitwise the same steps); the summed terms equal
    up to float32 rounding (<= 3 ulp): a masked sum over every anchor adds in another order than a sum over
    the boolean-indexed selection, whose length only the host-synced count gives."""
    for new, old in zip(build_targets(targets, anchors), build_targets_per_image(targets, anchors), strict=True):
        assert torch.equal(new, old)
    new_terms, new_grads = _loss_and_grads(MultiBoxLoss(VARIANCES), targets, anchors)
    old_terms, old_grads = _loss_and_grads(multibox_loss_per_image, targets, anchors)
    for new, old in zip(new_terms, old_terms, strict=True):
        torch.testing.assert_close(new, old, rtol=4e-7, atol=0.0)
    for new, old in zip(new_grads, old_grads, strict=True):
        assert torch.equal(new, old)


@pytest.mark.parametrize("case", list(HAND_CASES))
def test_batched_loss_equals_the_per_image_oracle_on_the_hand_cases(case: str) -> None:
    assert_same_as_oracle(HAND_CASES[case], ANCHORS)


def random_faces(batch: int, seed: int) -> list[torch.Tensor]:
    """0-11 faces per image (some tiny, some with no landmarks), as the dataset's (N, 15) rows."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        n = int(torch.randint(0, 12, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * 0.8
        box = torch.cat([xy, (xy + torch.rand(n, 2, generator=gen) ** 2 * 0.3 + 0.004).clamp(max=1)], dim=1)
        label = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, -1.0)[:, None]
        out.append(torch.cat([box, torch.rand(n, 10, generator=gen), label], dim=1))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_batched_loss_equals_the_per_image_oracle_on_a_realistic_batch(seed: int) -> None:
    """640 px anchors (16,800), batch 16 of 0-11 faces each, some tiny."""
    targets = random_faces(16, seed=seed)
    assert any(len(t) == 0 for t in targets) and max(len(t) for t in targets) > 5
    assert_same_as_oracle(targets, generate_anchors((640, 640)))


def test_two_faces_forcing_one_anchor_the_later_face_wins_as_in_the_reference_loop() -> None:
    anchors = generate_anchors((64, 64))
    first = center_to_corners(anchors[10:11])
    second = first + torch.tensor([0.004, 0.0, 0.004, 0.0])  # same best anchor, slightly lower IoU with it
    truths, labels = torch.cat([first, second]), torch.tensor([1.0, -1.0])
    rows = torch.cat([truths, torch.zeros(2, 10), labels[:, None]], dim=1)
    loc, conf, _ = (t[0] for t in match_anchors(flatten_targets([rows]), anchors))
    assert conf[10] == -1, "anchor 10 is forced to the second face"
    torch.testing.assert_close(loc[10], encode_boxes(second, anchors[10:11], VARIANCES)[0])
    oracle = match_one_image(truths, labels, torch.zeros(2, 10), anchors)
    assert torch.equal(loc, oracle[0]) and torch.equal(conf, oracle[1])


def test_faces_only_match_anchors_of_their_own_image() -> None:
    """Image 1's face covers anchor 3 exactly; image 0 and image 2 (no faces) must stay background there."""
    targets = [torch.tensor([face([0.15, 0.15, 0.35, 0.35], LANDMARKS)]), torch.zeros(0, 15),
               torch.tensor([face([0.65, 0.65, 0.85, 0.85], None)])]
    flat = flatten_targets(targets)
    assert flat.image_index.tolist() == [0, 2] and flat.num_images == 3
    loc, conf, landm = match_anchors(flat, ANCHORS)
    assert conf.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, -1]]
    assert not loc[1].any() and not landm[1].any()


def test_iou_is_bitwise_torchvisions() -> None:
    from torchvision.ops import box_iou as tv_box_iou

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(37, 2, generator=gen)
    b = torch.rand(500, 2, generator=gen)
    boxes1 = torch.cat([a, a + torch.rand(37, 2, generator=gen)], dim=1)
    boxes2 = torch.cat([b, b + torch.rand(500, 2, generator=gen) * 0.1], dim=1)
    assert torch.equal(box_iou(boxes1, boxes2), tv_box_iou(boxes1, boxes2))


def test_loss_needs_no_host_sync() -> None:
    """On the meta device every op that would make the host wait for the GPU (``nonzero``, boolean
    indexing, ``.item()``, data-dependent shapes) raises: the batched loss runs there, forward and
    backward, and the per-image oracle does not."""
    anchors = generate_anchors((128, 128)).to("meta")
    targets = random_faces(4, seed=2)
    preds = tuple(torch.empty(4, anchors.shape[0], k, device="meta", requires_grad=True) for k in (4, 2, 10))
    terms = MultiBoxLoss(VARIANCES)(preds, anchors, targets)
    terms.total.backward()
    assert terms.total.device.type == "meta" and preds[0].grad.shape == preds[0].shape
    with pytest.raises(NotImplementedError):
        multibox_loss_per_image(preds, anchors, targets)


def test_one_sort_mining_equals_the_double_argsort() -> None:
    from tests.core.loss_oracle import hard_negative_mask_double_argsort

    gen = torch.Generator().manual_seed(0)
    loss = torch.rand(8, 3000, generator=gen).round(decimals=2)  # many ties
    positive = torch.rand(8, 3000, generator=gen) < 0.01
    assert torch.equal(hard_negative_mask(loss, positive, 7), hard_negative_mask_double_argsort(loss, positive, 7))
