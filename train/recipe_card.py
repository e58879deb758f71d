"""The recipe card of docs/recipes.md, generated from `core.lab.recipes.RECIPES` so the two cannot drift apart.

    .venv/bin/python -m train.recipe_card                          # prints the Markdown tables
    .venv/bin/python -m train.recipe_card --write docs/recipes.md  # rewrites the card between its markers
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, input_file
from core.lab.recipes import DEFAULT_RECIPE, RECIPES, TrainRecipe

BEGIN, END = "<!-- recipe-card:begin (python -m train.recipe_card) -->", "<!-- recipe-card:end -->"
DOC = Path("docs/recipes.md")

# (recipe field, row label, how to set it)
ROWS: tuple[tuple[str, str, str], ...] = (
    ("optimizer", "optimizer", "`--optimizer`"),
    ("lr", "base learning rate", "`--lr`"),
    ("momentum", "momentum", "`--momentum`"),
    ("weight_decay", "weight decay", "`--weight-decay`"),
    ("max_epoch", "epochs", "`--max-epoch`"),
    ("lr_steps", "LR x`gamma` after epochs", "`--lr-steps`"),
    ("gamma", "gamma", "`--gamma`"),
    ("warmup_epochs", "warm-up epochs", "`--warmup-epochs`"),
    ("batch_size", "global batch", "`--batch-size`"),
    ("img_size", "training size (px)", "`--img-size`"),
    ("neg_pos", "hard negatives per positive", "`--neg-pos`"),
    ("match_iou", "anchor match IoU", "`--match-iou`"),
    ("pretrained_backbone", "ImageNet backbone", "`--backbone-weights PATH`"),
    ("test_top_k", "test: boxes into NMS", "`eval.predict --top-k`"),
    ("test_keep_top_k", "test: boxes kept after NMS", "`eval.predict --keep-top-k`"),
)


def _value(recipe: TrainRecipe, key: str) -> str:
    value = getattr(recipe, key)
    if key == "optimizer":
        return {"adamw": "AdamW", "sgd": "SGD"}[value]
    if key == "momentum" and recipe.optimizer != "sgd":
        return "-"
    if key == "lr_steps":
        return ", ".join(str(v) for v in value)
    if key == "pretrained_backbone":
        return "yes" if value else "no"
    if key in ("test_top_k", "test_keep_top_k"):
        return str(value) if value else "no cap (0)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def per_recipe(key: str) -> str:
    """A setting's value in every recipe, for help texts: "7" when they agree, "350 / 250" (recipe order) when not.

    A value that does not apply to a recipe ("-", momentum under AdamW) is left out.
    """
    values = [v for v in (_value(recipe, key) for recipe in RECIPES.values()) if v != "-"]
    return values[0] if len(set(values)) == 1 else " / ".join(values)


def recipe_summary(recipe: TrainRecipe) -> str:
    """One line of `python -m train --help`: the settings that tell the recipes apart."""
    parts = [_value(recipe, "optimizer"), f"lr {_value(recipe, 'lr')}"]
    if recipe.optimizer == "sgd":
        parts.append(f"momentum {_value(recipe, 'momentum')}")
    parts += [f"weight decay {_value(recipe, 'weight_decay')}", f"{recipe.max_epoch} epochs",
              f"{recipe.warmup_epochs:g} warm-up epochs" if recipe.warmup_epochs else "no warm-up",
              f"LR x{recipe.gamma:g} at " + " and ".join(str(s) for s in recipe.lr_steps)]
    return ", ".join(parts)


def recipes_help() -> str:
    """The recipes paragraph of `python -m train --help`, from the same registry as the card."""
    lines = [f"recipes (--recipe, default {DEFAULT_RECIPE}; any flag given explicitly overrides the recipe's value):"]
    lines += [f"  {name:<12} {recipe_summary(recipe)}" for name, recipe in RECIPES.items()]
    lines.append(f"  all: global batch {per_recipe('batch_size')}, {per_recipe('img_size')} px, "
                 f"{per_recipe('neg_pos')} hard negatives per positive, match IoU {per_recipe('match_iou')} "
                 "(sources: docs/recipes.md).")
    default = RECIPES[DEFAULT_RECIPE]
    lines.append(f"With another --max-epoch the recipe's milestones scale with it (e.g. "
                 f"round({default.lr_steps[0]}*E/{default.max_epoch})) unless --lr-steps")
    lines.append("is given.")
    return "\n".join(lines) + "\n"


def recipe_card() -> str:
    """One Markdown table per recipe: setting, flag, value, source (file:line of the reference)."""
    parts = []
    for name, recipe in RECIPES.items():
        lines = [f"`--recipe {name}`", "", "| setting | flag | value | source |", "|---|---|---|---|"]
        lines += [f"| {label} | {flag} | {_value(recipe, key)} | {recipe.source(key)} |" for key, label, flag in ROWS]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def card_in(text: str) -> str | None:
    """The card between the markers of a document, or None when the markers are missing."""
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_card(text: str) -> str:
    """`text` with the generated card between its markers."""
    head, tail = text.split(BEGIN, 1)[0], text.split(END, 1)[1]
    return f"{head}{BEGIN}\n{recipe_card()}{END}{tail}"


def build_parser() -> CliParser:
    p = CliParser(prog="python -m train.recipe_card", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", type=input_file, default=None, metavar="FILE",
                   help=f"rewrite the card between the markers of FILE (e.g. {DOC}) instead of printing it")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write is None:
        print(recipe_card(), end="")
        return 0
    try:
        text = args.write.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: {args.write}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if card_in(text) is None:
        print(f"error: {args.write} has no recipe-card markers ({BEGIN} ... {END})", file=sys.stderr)
        return 2
    atomic_write_text(args.write, with_card(text))
    print(f"wrote the recipe card into {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
