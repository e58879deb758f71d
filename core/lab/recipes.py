"""Published training recipes: every setting, with the file and line of the reference it comes from. `python -m
train --recipe NAME` starts from one; TrainConfig's defaults and `python -m train --help` are derived from them
(the values shared with the loss, NEG_POS and MATCH_IOU, live in core.config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import MATCH_IOU, NEG_POS, TEST_KEEP_TOP_K, TEST_TOP_K, _lookup

RETINAFACE_REF = "biubug6/Pytorch_Retinaface@b984b4b"


FEATHERFACE_REF = "fokouarnaud/FeatherFace@f023145"


@dataclass(frozen=True)
class TrainRecipe:
    """A published training (and test) recipe: every setting, and in `sources` where its value comes from.

    `python -m train --recipe NAME` starts from these values; explicit flags override them. Test-time
    caps (`test_top_k`, `test_keep_top_k`, 0 = none) are what that reference's WIDERFace test script uses.
    """

    name: str
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    max_epoch: int
    lr_steps: tuple[int, ...]
    gamma: float
    warmup_epochs: float
    batch_size: int
    img_size: int
    neg_pos: int
    match_iou: float
    pretrained_backbone: bool
    test_top_k: int
    test_keep_top_k: int
    sources: tuple[tuple[str, str], ...] = ()

    def source(self, setting: str) -> str:
        """Where the value of `setting` comes from (file and line of the reference)."""
        return dict(self.sources).get(setting, "")


_SHARED: dict[str, Any] = {"lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4, "lr_steps": (190, 220), "gamma": 0.1,
                           "batch_size": 32, "img_size": 640, "neg_pos": NEG_POS, "match_iou": MATCH_IOU,
                           "pretrained_backbone": True}


_RF_TRAIN, _RF_CFG = f"{RETINAFACE_REF} train.py", f"{RETINAFACE_REF} data/config.py"


_FF_TRAIN, _FF_CFG = f"{FEATHERFACE_REF} train_cbam.py", f"{FEATHERFACE_REF} data/config.py"


RECIPES: dict[str, TrainRecipe] = {
    "featherface": TrainRecipe(
        name="featherface", optimizer="adamw", max_epoch=350, warmup_epochs=5.0, **_SHARED,
        test_top_k=TEST_TOP_K, test_keep_top_k=TEST_KEEP_TOP_K,
        sources=(
            ("optimizer", f"{_FF_TRAIN}:136 optim.AdamW; {_FF_CFG}:29 cfg_cbam_paper_exact 'optim': 'adamw'"),
            ("lr", f"{_FF_CFG}:28 cfg_cbam_paper_exact 'lr': 1e-3"),
            ("momentum", "unused by AdamW"),
            ("weight_decay", f"{_FF_TRAIN}:58 --weight_decay default 5e-4"),
            ("max_epoch", f"{_FF_CFG}:19 cfg_cbam_paper_exact 'max_epoch': 350"),
            ("lr_steps", f"{_FF_CFG}:22 cfg_cbam_paper_exact 'lr_steps': [190, 220] "
                         "(epoch-wise decay, train_cbam.py:153-162)"),
            ("gamma", f"{_FF_TRAIN}:60 --gamma default 0.1"),
            ("warmup_epochs", "this project's FeatherFace default; the source's train_cbam.py has no warm-up"),
            ("batch_size", f"{_FF_CFG}:16 cfg_cbam_paper_exact 'batch_size': 32"),
            ("img_size", f"{_FF_CFG}:23 cfg_cbam_paper_exact 'image_size': 640"),
            ("neg_pos", f"{_FF_TRAIN}:139 MultiBoxLoss(cfg['num_classes'], 0.35, True, 0, True, 7, 0.35, False)"),
            ("match_iou", f"{_FF_TRAIN}:139 (same call; the ECA-CBAM scripts use 0.5, train_eca_cbam.py:411)"),
            ("pretrained_backbone", f"{_FF_CFG}:24 cfg_cbam_paper_exact 'pretrain': True"),
            ("test_top_k", f"{FEATHERFACE_REF} test_widerface.py:44 --top_k 5000, applied at :260"),
            ("test_keep_top_k", f"{FEATHERFACE_REF} test_widerface.py:46 --keep_top_k 750, applied at :272"),
        ),
    ),
    "retinaface": TrainRecipe(
        name="retinaface", optimizer="sgd", max_epoch=250, warmup_epochs=0.0, **_SHARED,
        test_top_k=0, test_keep_top_k=0,
        sources=(
            ("optimizer", f"{_RF_TRAIN}:81 optim.SGD"),
            ("lr", f"{_RF_TRAIN}:20 --lr default 1e-3"),
            ("momentum", f"{_RF_TRAIN}:21 --momentum default 0.9"),
            ("weight_decay", f"{_RF_TRAIN}:24 --weight_decay default 5e-4"),
            ("max_epoch", f"{_RF_CFG}:13 cfg_mnet 'epoch': 250"),
            ("lr_steps", f"{_RF_CFG}:14-15 cfg_mnet 'decay1': 190, 'decay2': 220 (train.py:99 stepvalues)"),
            ("gamma", f"{_RF_TRAIN}:25 --gamma default 0.1"),
            ("warmup_epochs", f"{_RF_TRAIN}:150 warmup_epoch = -1 (no warm-up)"),
            ("batch_size", f"{_RF_CFG}:11 cfg_mnet 'batch_size': 32"),
            ("img_size", f"{_RF_CFG}:16 cfg_mnet 'image_size': 640"),
            ("neg_pos", f"{_RF_TRAIN}:82 MultiBoxLoss(num_classes, 0.35, True, 0, True, 7, 0.35, False)"),
            ("match_iou", f"{_RF_TRAIN}:82 (same call)"),
            ("pretrained_backbone", f"{_RF_CFG}:17 cfg_mnet 'pretrain': True; models/retinaface.py loads "
                                    "./weights/mobilenetV1X0.25_pretrain.tar"),
            ("test_top_k", f"{RETINAFACE_REF} test_widerface.py:153-154 (the [:args.top_k] cut is commented out)"),
            ("test_keep_top_k", f"{RETINAFACE_REF} test_widerface.py:167-168 (the keep_top_k cut is commented out)"),
        ),
    ),
}


DEFAULT_RECIPE = "featherface"


def get_recipe(name: str) -> TrainRecipe:
    """Look a training recipe up by name, failing with the list of valid names."""
    return _lookup(RECIPES, name, "recipe")
