"""Training recipes: the values the issue and the references give, flag overrides, and the README card."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.lab.recipes import DEFAULT_RECIPE, RECIPES
from tests.conftest import exit_status
from train.cli import build_parser, config_from_args
from train.recipe_card import BEGIN, DOC, END, ROWS, card_in, main, recipe_card
from train.trainer import RECIPE_SETTINGS, TrainConfig

ROOT = Path(__file__).resolve().parents[3]


def parse(*argv: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["--network", "cbam", "--data", str(ROOT / "tests"), *argv]))


def test_recipe_values_as_published():
    ff, rf = RECIPES["featherface"], RECIPES["retinaface"]
    assert (ff.optimizer, ff.lr, ff.weight_decay, ff.max_epoch, ff.lr_steps, ff.warmup_epochs) == \
        ("adamw", 1e-3, 5e-4, 350, (190, 220), 5.0)
    assert (rf.optimizer, rf.lr, rf.momentum, rf.weight_decay, rf.max_epoch, rf.lr_steps, rf.warmup_epochs) == \
        ("sgd", 1e-3, 0.9, 5e-4, 250, (190, 220), 0.0)
    for recipe in (ff, rf):
        assert (recipe.neg_pos, recipe.match_iou, recipe.batch_size, recipe.img_size, recipe.gamma) == \
            (7, 0.35, 32, 640, 0.1)
        assert recipe.pretrained_backbone
    assert (ff.test_top_k, ff.test_keep_top_k, rf.test_top_k, rf.test_keep_top_k) == (5000, 750, 0, 0)


def test_every_setting_has_a_source():
    for recipe in RECIPES.values():
        for key, _, _ in ROWS:
            assert recipe.source(key), f"{recipe.name}.{key} has no source"


def test_train_config_defaults_are_the_default_recipe():
    plain = TrainConfig(network="cbam", data=Path("d"))
    via = TrainConfig.from_recipe(DEFAULT_RECIPE, "cbam", "d")
    for key in (*RECIPE_SETTINGS, "lr_steps_used", "recipe"):
        assert getattr(plain, key) == getattr(via, key), key
    assert via.recipe_overrides == []


def test_cli_recipe_and_overrides():
    rf = parse("--recipe", "retinaface")
    assert (rf.optimizer, rf.momentum, rf.max_epoch, rf.lr_steps_used, rf.warmup_epochs, rf.neg_pos) == \
        ("sgd", 0.9, 250, [190, 220], 0.0, 7)
    assert parse().optimizer == "adamw" and parse().lr_steps_used == [190, 220]
    # explicit flags win; milestones scale from the recipe's own length (250), not FeatherFace's 350
    short = parse("--recipe", "retinaface", "--max-epoch", "100", "--optimizer", "adamw", "--neg-pos", "3")
    assert (short.optimizer, short.max_epoch, short.lr_steps_used, short.neg_pos) == ("adamw", 100, [76, 88], 3)
    assert short.recipe_overrides == ["max_epoch", "neg_pos", "optimizer"]
    assert parse("--max-epoch", "100").lr_steps_used == [54, 63]
    assert parse("--recipe", "retinaface", "--max-epoch", "100", "--lr-steps", "10", "20").lr_steps_used == [10, 20]
    assert parse("--recipe", "retinaface", "--warmup-epochs", "2").warmup_epochs == 2.0
    with pytest.raises(SystemExit):
        parse("--recipe", "yolo")
    with pytest.raises(KeyError, match="unknown recipe"):
        TrainConfig.from_recipe("yolo", "cbam", "d")


def test_docs_recipe_card_is_current(tmp_path):
    """docs/recipes.md holds the generated card between its markers; --write puts it back when stale."""
    assert card_in((ROOT / DOC).read_text()) == recipe_card()
    stale = tmp_path / "recipes.md"
    stale.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    assert main(["--write", str(stale)]) == 0
    assert card_in(stale.read_text()) == recipe_card() and stale.read_text().endswith(f"{END}\noutro\n")
    assert exit_status(main, ["--write", str(tmp_path / "none.md")]) == 2  # refused while parsing
