"""One home per fact: published numbers, targets and recipe values are typed once, in the registry
(`core.config`); TrainConfig defaults, function defaults and CLI help are derived from it.

The scan reads every product module (core, eval, train, dashboard) as Python syntax: a fact counts where it
is a number literal (docstrings, comments and quoted source lines do not count).
"""

from __future__ import annotations

import ast
import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest

from core import config
from core.config import MODEL_CONFIGS, TARGETS
from core.lab.recipes import DEFAULT_RECIPE, RECIPES
from train.cli import build_parser
from train.trainer import RECIPE_SETTINGS, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "eval", "train", "dashboard")
REGISTRY = "core/config.py"
# Recipe settings and the names a literal of the same value is bound to when it restates that setting
# (a function parameter, keyword argument, assignment target or dict key).
RECIPE_NAMES: dict[str, set[str]] = {
    "lr": {"lr"}, "momentum": {"momentum"}, "weight_decay": {"weight_decay"}, "max_epoch": {"max_epoch"},
    "lr_steps": {"lr_steps"}, "gamma": {"gamma"}, "warmup_epochs": {"warmup_epochs"},
    "batch_size": {"batch_size"}, "img_size": {"img_size"},
    "neg_pos": {"neg_pos", "neg_pos_ratio", "NEG_POS"},
    "match_iou": {"match_iou", "overlap_threshold", "threshold", "MATCH_IOU"},
    "test_top_k": {"top_k", "test_top_k", "TEST_TOP_K"},
    "test_keep_top_k": {"keep_top_k", "test_keep_top_k", "TEST_KEEP_TOP_K"},
}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def _literal(node: ast.AST | None) -> object:
    """The value of a number literal or a tuple of them (None for anything else)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Tuple) and node.elts and all(isinstance(e, ast.Constant) for e in node.elts):
        return tuple(e.value for e in node.elts)
    return None


def _bound_literals(tree: ast.Module) -> list[tuple[str, object]]:
    """(name, value) for every number literal bound to a name: defaults, keywords, assignments, dict keys."""
    found: list[tuple[str, object]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            for arg, default in zip(positional[len(positional) - len(node.defaults):], node.defaults, strict=True):
                found.append((arg.arg, _literal(default)))
            for arg, default in zip(node.kwonlyargs, node.kw_defaults, strict=True):
                found.append((arg.arg, _literal(default)))
        elif isinstance(node, ast.keyword) and node.arg:
            found.append((node.arg, _literal(node.value)))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.append((node.target.id, _literal(node.value)))
        elif isinstance(node, ast.Assign):
            found += [(t.id, _literal(node.value)) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.Dict):
            found += [(k.value, _literal(v)) for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return [(name, value) for name, value in found if value is not None]


def _all_literals(tree: ast.Module) -> set[object]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) in (int, float)}


def _published_numbers() -> dict[str, float]:
    facts: dict[str, float] = {}
    for name, cfg in MODEL_CONFIGS.items():
        if cfg.published is not None:
            for field in ("easy", "medium", "hard", "mAP", "params"):
                facts[f"{name} published {field}"] = getattr(cfg.published, field)
    facts.update({f"target {metric}": value for metric, value in TARGETS.items()})
    return facts


def test_published_numbers_and_targets_are_typed_only_in_the_registry():
    modules = _modules()
    facts = _published_numbers()
    assert len(facts) >= 19  # three published variants x 5 numbers + 4 targets
    homes: dict[str, list[str]] = {}
    for fact, value in facts.items():
        homes[fact] = [path for path, tree in modules if value in _all_literals(tree)]
    assert {fact: where for fact, where in homes.items() if where != [REGISTRY]} == {}


def test_recipe_values_are_typed_in_exactly_one_module():
    modules = [(path, _bound_literals(tree)) for path, tree in _modules()]
    homes: dict[str, set[str]] = defaultdict(set)
    for recipe in RECIPES.values():
        for setting, names in RECIPE_NAMES.items():
            value = getattr(recipe, setting)
            if not value:  # 0 / False: "none" is not a fact worth a home
                continue
            for path, bound in modules:
                if any(name in names and literal == value for name, literal in bound):
                    homes[f"{recipe.name}.{setting}={value}"].add(path)
    assert homes, "the scan found no recipe value at all"
    assert {fact: sorted(where) for fact, where in homes.items() if len(where) != 1} == {}


def test_a_planted_second_home_is_found():
    """The scan is not blind: a module restating neg:pos or a target is caught."""
    tree = ast.parse("def loss(neg_pos_ratio: int = 7): ...\nGOAL = {'hard': 80.5}\n")
    assert ("neg_pos_ratio", config.NEG_POS) in _bound_literals(tree)
    assert TARGETS["hard"] in _all_literals(tree)


def test_train_config_defaults_are_the_default_recipe():
    cfg = TrainConfig(network="cbam", data=Path("x"))
    recipe = RECIPES[DEFAULT_RECIPE]
    assert {k: getattr(cfg, k) for k in RECIPE_SETTINGS} == {k: getattr(recipe, k) for k in RECIPE_SETTINGS}
    assert cfg.lr_steps_used == list(recipe.lr_steps)


def _help(flag: str) -> str:
    action = next(a for a in build_parser()._actions if flag in a.option_strings)
    return " ".join(str(action.help).split())


@pytest.mark.parametrize(("flag", "setting", "new"), [("--neg-pos", "neg_pos", 9), ("--match-iou", "match_iou", 0.41),
                                                      ("--max-epoch", "max_epoch", 123)])
def test_train_help_follows_the_registry(monkeypatch, flag, setting, new):
    """Change a recipe in the registry and `python -m train --help` says the new value: the help is derived."""
    old = getattr(RECIPES[DEFAULT_RECIPE], setting)
    assert f"{old:g}" in _help(flag)
    monkeypatch.setitem(RECIPES, DEFAULT_RECIPE, dataclasses.replace(RECIPES[DEFAULT_RECIPE], **{setting: new}))
    assert f"{new:g}" in _help(flag)
    if setting in ("neg_pos", "match_iou"):
        assert f"{new:g}" in build_parser().epilog
