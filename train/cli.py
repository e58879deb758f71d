"""``python -m train`` (or ``torchrun --nproc_per_node K -m train``): argument parsing and exit codes.

Exit codes: 0 finished, 2 unusable arguments/data/checkpoint (message on stderr), 3 stopped on a
NaN/inf loss (the last good checkpoint is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.checkpoint import CheckpointError
from core.config import MODEL_CONFIGS
from core.data.dataset import UnreadableImageError
from core.data.widerface import LabelFormatError
from core.io.cli_paths import CliParser, PathArg, fail, input_dir, output_dir, read_problem, require
from core.lab.artifacts import DEFAULT_DATA, DEFAULT_RUNS, RUN_JSON
from core.lab.recipes import DEFAULT_RECIPE, RECIPES
from train.distributed import DeviceChoiceError, resolve_device
from train.recipe_card import per_recipe, recipes_help
from train.schedule import WARMUP_START_LR
from train.state import ResumeError
from train.trainer import RECIPE_SETTINGS, RESTORED_ON_RESUME, NonFiniteLossError, TrainConfig, TrainSetupError, train

EPILOG = """
--resume auto on an existing run takes the run's recorded settings (its run.json) for every flag not
given, and refuses a given flag that contradicts them, naming it.

examples:
  .venv/bin/python -m train --network eca_cbam --data data/widerface --run-name eca_s0
  .venv/bin/python -m train --network retinaface_mnet --recipe retinaface --data data/widerface --run-name rf_s0
  .venv/bin/python -m train --run-name eca_s0 --resume auto
  .venv/bin/torchrun --nproc_per_node 4 -m train --network cbam --data data/widerface --batch-size 32
"""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {value}")
    return value


resume_arg = PathArg("input_file", text=True, keywords=("auto",))  # "auto" or a checkpoint that exists
input_file_text = PathArg("input_file", text=True)  # TrainConfig keeps these as strings (run.json)


def build_parser() -> CliParser:
    p = CliParser(prog="python -m train", description="Train a FeatherFace variant on WIDERFace "
                  "(or a synthetic set in the same layout).", epilog=recipes_help() + EPILOG,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", default=None, choices=list(MODEL_CONFIGS),
                   help="model variant (required, except with --resume auto on an existing run)")
    p.add_argument("--data", type=input_dir, default=DEFAULT_DATA,
                   help=f"dataset root: train/label.txt + train/images; val/ and ground_truth/ optional (default "
                        f"{DEFAULT_DATA}, where python -m core.data.synth writes)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                   help=f"training recipe the settings below start from (default {DEFAULT_RECIPE})")
    p.add_argument("--max-epoch", type=positive_int, default=None, help=f"epochs (recipe: {per_recipe('max_epoch')})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="GLOBAL batch size, split evenly across torchrun processes (recipe: "
                        f"{per_recipe('batch_size')})")
    p.add_argument("--lr", type=float, default=None, help=f"base learning rate (recipe: {per_recipe('lr')})")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default=None, help=f"recipe: {per_recipe('optimizer')}")
    p.add_argument("--momentum", type=float, default=None, help=f"SGD momentum (recipe: {per_recipe('momentum')})")
    p.add_argument("--weight-decay", type=float, default=None, help=f"recipe: {per_recipe('weight_decay')}")
    p.add_argument("--warmup-epochs", type=float, default=None,
                   help=f"linear warm-up from {WARMUP_START_LR:g} to --lr over this many epochs (recipe: "
                        f"{per_recipe('warmup_epochs')}; 0 = none)")
    p.add_argument("--lr-steps", type=positive_int, nargs="+", default=None, metavar="EPOCH",
                   help="after this many epochs the LR is multiplied by --gamma (recipe: "
                        f"{per_recipe('lr_steps')}, scaled to "
                        "--max-epoch)")
    p.add_argument("--gamma", type=float, default=None,
                   help=f"LR decay factor at each step (recipe: {per_recipe('gamma')})")
    p.add_argument("--img-size", type=positive_int, default=None,
                   help=f"square training input size (recipe: {per_recipe('img_size')})")
    p.add_argument("--workers", type=non_negative_int, default=4, help="DataLoader workers per process (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seeds init, data order and augmentation (default 0)")
    p.add_argument("--out", type=output_dir, default=DEFAULT_RUNS,
                   help=f"root of run directories (default {DEFAULT_RUNS}/)")
    p.add_argument("--run-name", default=None,
                   help="run directory name under --out (default <network>_s<seed>_<date-time>)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda | cuda:N")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH|auto", type=resume_arg,
                   help="continue from a checkpoint; 'auto' (or no value) = <out>/<run-name>/weights/last.pth "
                        "when it exists, with the settings recorded in the run's run.json, else start the run")
    p.add_argument("--eval-every", type=non_negative_int, default=10,
                   help="compute val AP every N epochs and at the last one (default 10; 0 = never)")
    p.add_argument("--eval-size", type=non_negative_int, default=640,
                   help="long side (px) val images are shrunk to for the in-training AP (default 640; "
                        "0 = original size). Final numbers: python -m eval.predict")
    p.add_argument("--neg-pos", type=positive_int, default=None,
                   help=f"hard negatives mined per positive anchor (recipe: {per_recipe('neg_pos')})")
    p.add_argument("--match-iou", type=unit_interval, default=None,
                   help=f"IoU at which an anchor becomes a positive for a face (recipe: {per_recipe('match_iou')})")
    p.add_argument("--backbone-weights", default=None, metavar="PATH", type=input_file_text,
                   help="ImageNet MobileNetV1-0.25 in RetinaFace's format (mobilenetV1X0.25_pretrain.tar / .pth / "
                        ".pth.tar, or the output of python -m train.pretrain_backbone); both recipes assume it")
    p.add_argument("--amp", action="store_true", help="mixed precision (autocast + GradScaler); CUDA only")
    p.add_argument("--on-label-error", choices=("fail", "skip"), default="fail",
                   help="bad label lines / images: stop (default) or skip them with a warning")
    p.add_argument("--max-train-images", type=positive_int, default=None, metavar="K",
                   help="train on the first K images only (quick experiments)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: synchronise BatchNorm statistics across processes (small "
                        "per-GPU batches, e.g. 4 images each at 8 GPUs); checkpoints stay plain-BatchNorm")
    p.add_argument("--log-every", type=positive_int, default=10, metavar="N",
                   help="reduce, log and NaN-check the step losses every N steps (default 10); every step is "
                        "still logged, but the device is waited for only once per N steps")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


RECIPE_SETTINGS_AND_STEPS: tuple[str, ...] = (*RECIPE_SETTINGS, "lr_steps")
CHANGEABLE_ON_RESUME: tuple[str, ...] = ("max_epoch",)  # a resumed run may be extended (or ended sooner)


def given_flags(argv: Sequence[str]) -> set[str]:
    """The destinations of the flags actually typed in `argv` (not filled in by a default)."""
    probe = build_parser()
    for action in probe._actions:
        action.default, action.required = argparse.SUPPRESS, False
    return set(vars(probe.parse_known_args(list(argv))[0]))


def _same(key: str, given: Any, recorded: Any) -> bool:
    if given is None or recorded is None:
        return given is None and recorded is None
    if key in ("data", "backbone_weights"):
        return Path(given).resolve() == Path(recorded).resolve()
    if isinstance(given, float) or isinstance(recorded, float):
        return math.isclose(float(given), float(recorded), rel_tol=1e-9)
    if isinstance(given, (list, tuple)) or isinstance(recorded, (list, tuple)):
        return list(given) == list(recorded)
    return given == recorded


def restore_recorded(args: argparse.Namespace, given: set[str]) -> list[str]:
    """`--resume auto` on a run that exists: every setting in RESTORED_ON_RESUME not given on the command line
    takes the run's recorded value (run.json "args"); a given one that contradicts it raises `ResumeError`
    naming the flag, except `--max-epoch` (a run may be extended). Returns the restored flags as `--flag value`
    strings, for the log."""
    if args.resume != "auto" or not args.run_name:
        return []
    run_json = args.out / args.run_name / RUN_JSON
    if not run_json.is_file():
        return []
    try:
        meta = json.loads(run_json.read_text(encoding="utf-8"))
        recorded = meta["args"]
        # Runs recorded before recipes kept no override list: take every recorded value as given.
        overrides = set(recorded.get("recipe_overrides", RECIPE_SETTINGS_AND_STEPS))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResumeError(f"--resume auto: {run_json} is unreadable ({read_problem(exc)}); repair it or start a new "
                          "--run-name") from None
    conflicts, restored = [], []
    for key in RESTORED_ON_RESUME:
        if key not in recorded:
            continue
        flag = "--" + key.replace("_", "-")
        if key in given:
            if key in CHANGEABLE_ON_RESUME:
                continue
            if not _same(key, getattr(args, key), recorded[key]):
                conflicts.append(f"{flag} {_show(getattr(args, key))} (recorded: {_show(recorded[key])})")
            continue
        from_recipe = key in RECIPE_SETTINGS_AND_STEPS and key not in overrides
        value = None if from_recipe else recorded[key]  # a recipe value comes back with the recorded recipe
        if key == "data" and value is not None:
            value = Path(value)
        if value is not None and not _same(key, getattr(args, key), value):
            restored.append(f"{flag} {_show(value)}")
        setattr(args, key, value)
    if conflicts:
        raise ResumeError(f"--resume auto continues {run_json.parent} with the settings in {run_json}; "
                          f"{'; '.join(conflicts)}: drop the flag or start a new --run-name")
    return restored


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The chosen recipe, with every flag given on the command line on top."""
    overrides = {key: getattr(args, key) for key in RECIPE_SETTINGS_AND_STEPS}
    return TrainConfig.from_recipe(
        args.recipe, args.network, args.data, **overrides,
        workers=args.workers, seed=args.seed, out=args.out, run_name=args.run_name, device=args.device,
        resume=args.resume, eval_every=args.eval_every, eval_size=args.eval_size, amp=args.amp,
        on_label_error=args.on_label_error, max_train_images=args.max_train_images, progress=not args.no_progress,
        log_every=args.log_every, sync_bn=args.sync_bn, backbone_weights=args.backbone_weights,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        restored = restore_recorded(args, given_flags(argv))
    except ResumeError as exc:
        return fail(exc)
    if args.network is None:
        parser.error("--network is required (or --run-name of an existing run with --resume auto)")
    require(parser, "--data", args.data, "input_dir")  # a default or a restored value: checked here
    require(parser, "--out", args.out, "output_dir")
    if restored:
        print(f"--resume auto: settings restored from {args.out / args.run_name / RUN_JSON}: {' '.join(restored)}",
              file=sys.stderr)
    try:
        resolve_device(args.device)
    except DeviceChoiceError as exc:
        return fail(exc)
    except (RuntimeError, ValueError) as exc:
        print(f"error: --device {args.device}: {exc}", file=sys.stderr)
        return 2
    try:
        train(config_from_args(args))
    except NonFiniteLossError as exc:
        return fail(exc, 3)
    except (TrainSetupError, ResumeError, CheckpointError, LabelFormatError, UnreadableImageError,
            FileNotFoundError) as exc:
        return fail(exc)
    return 0
