"""The README's recipe card, generated from `core.config.RECIPES` so the two cannot drift apart.

    .venv/bin/python -m train.recipe_card     # prints the Markdown tables
"""

from __future__ import annotations

from core.config import RECIPES, TrainRecipe

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


def recipe_card() -> str:
    """One Markdown table per recipe: setting, flag, value, source (file:line of the reference)."""
    parts = []
    for name, recipe in RECIPES.items():
        lines = [f"`--recipe {name}`", "", "| setting | flag | value | source |", "|---|---|---|---|"]
        lines += [f"| {label} | {flag} | {_value(recipe, key)} | {recipe.source(key)} |" for key, label, flag in ROWS]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(recipe_card(), end="")
