"""Which checkpoint each compared model is evaluated with: a folder of runs (Final.pth, <model>.pth,
<model>_s<seed>.pth) or a JSON manifest, and what a checkpoint says about its training (epochs, seed)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.checkpoint import CheckpointError, read_checkpoint
from core.config import MODEL_CONFIGS
from core.io.cli_paths import (
    input_dir,
    input_path,
    read_problem,
)
from core.lab.artifacts import (
    DEFAULT_DATA,
    DEFAULT_RUNS,
    RUN_JSON,
)
from core.lab.study_manifest import parse_run_name


class WeightsError(ValueError):
    """No usable checkpoint could be found for a model; the message says where it looked."""


@dataclass(frozen=True)
class Weights:
    """A checkpoint chosen for a model, with what it says about its training."""

    model: str
    path: Path
    epochs: int | None
    seed: int | None


def display_path(path: Path | str) -> str:
    """Path as stored in the tables: relative to the working directory when inside it, else absolute."""
    real = Path(path).resolve()
    try:
        return real.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return real.as_posix()


def _path_names_model(path: Path) -> str | None:
    """A model name the file's own name or folder claims (cbam.pth, cbam_s1.pth, cbam/Final.pth), if any."""
    for name in (path.stem, path.parent.name):
        parsed = parse_run_name(name)
        for candidate in (name, parsed[0] if parsed else None):
            if candidate in MODEL_CONFIGS:
                return candidate
    return None


def _from_manifest(manifest: Path, models: Sequence[str]) -> dict[str, Path]:
    """{"weights": {model: path}}, {"models": {model: path | {"weights": path}}} or {model: path}.

    A model listed without a path uses `<manifest dir>/weights/<model>.pth`.
    Relative paths are taken from the manifest's folder.
    """
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{manifest}: unreadable weights manifest ({read_problem(exc)})") from None
    table = data.get("weights") or data.get("models") or data if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise WeightsError(f"{manifest}: expected a JSON object mapping model names to checkpoints")
    out = {}
    for model in models:
        entry = table.get(model)
        if isinstance(entry, dict):
            entry = entry.get("weights") or entry.get("path") or entry.get("checkpoint")
        if entry is None and model in table:
            entry = f"weights/{model}.pth"
        if not isinstance(entry, str):
            raise WeightsError(f"{manifest}: no checkpoint listed for {model!r}")
        out[model] = manifest.parent / entry
    return out


def _is_candidate(path: Path, checkpoint: str) -> bool:
    """`<checkpoint>.pth` in a run (Final.pth by default), or a file named after a model: cbam.pth, cbam_s1.pth."""
    if path.stem == checkpoint:
        return True
    parsed = parse_run_name(path.stem)
    return path.stem in MODEL_CONFIGS or (parsed is not None and parsed[0] in MODEL_CONFIGS)


def _scan_dir(root: Path, checkpoint: str = "Final") -> dict[str, list[Path]]:
    """Checkpoints under `root` per embedded model name; a path that names another model is an error."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.pth")):
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not _is_candidate(path, checkpoint):
            continue
        name = read_checkpoint(path).get("model_name")
        claimed = _path_names_model(path)
        if claimed is not None and claimed != name:
            raise CheckpointError(f"checkpoint {path} holds model {name!r}, but its path says {claimed!r}")
        found.setdefault(str(name), []).append(path)
    return found


def _missing(model: str, root: Path, checkpoint: str) -> WeightsError:
    return WeightsError(f"no checkpoint for {model!r} under {root} (looked for {checkpoint}.pth, {model}.pth and "
                        f"{model}_s<seed>.pth holding that model); pass a JSON manifest to choose files explicitly")


def _from_dir(root: Path, models: Sequence[str], checkpoint: str = "Final") -> dict[str, Path]:
    """The newest candidate checkpoint per model under `root` (see `_is_candidate`)."""
    found = _scan_dir(root, checkpoint)
    out = {}
    for model in models:
        if not found.get(model):
            raise _missing(model, root, checkpoint)
        out[model] = max(found[model], key=lambda p: p.stat().st_mtime_ns)
    return out


def resolve_weights(source: Path | str, models: Sequence[str], checkpoint: str = "Final") -> dict[str, Path]:
    """Checkpoint path per model from a folder (runs/, weights/) or a JSON manifest; errors name the gap."""
    source = Path(source)
    if source.is_file() and source.suffix == ".json":
        paths = _from_manifest(source, models)
    elif source.is_dir():
        paths = _from_dir(source, models, checkpoint)
    elif source.is_file():
        raise WeightsError(f"{source} is a file but not a .json manifest: give a folder of checkpoints (runs/, "
                           "weights/) or a JSON manifest model -> checkpoint")
    else:
        raise WeightsError(f"{source}: weights source not found (need a folder or a .json manifest)")
    for model, path in paths.items():
        if not path.is_file():
            raise WeightsError(f"checkpoint for {model!r} not found: {path}")
    return paths


def resolve_all_weights(source: Path | str, models: Sequence[str], checkpoint: str = "Final") -> list[tuple[str, Path]]:
    """Every candidate checkpoint per model under a folder (a study: one per seed), in model then path order."""
    source = Path(source)
    if not source.is_dir():
        raise WeightsError(f"{source}: --all-seeds needs a folder (a study or a weights folder)")
    found = _scan_dir(source, checkpoint)
    out = []
    for model in models:
        if not found.get(model):
            raise _missing(model, source, checkpoint)
        out += [(model, p) for p in sorted(found[model])]
    return out


def add_data_and_weights_args(parser: argparse.ArgumentParser) -> None:
    """--data and --weights-dir, as every CLI that runs the compared models over val images reads them."""
    parser.add_argument("--data", type=input_dir, default=DEFAULT_DATA,
                        help=f"dataset root (val/wider_val.txt, ground_truth/; default {DEFAULT_DATA})")
    parser.add_argument("--weights-dir", type=input_path, default=DEFAULT_RUNS,
                        help="folder searched for Final.pth / <model>.pth (default runs/, where training writes "
                             "runs/<run-name>/weights/Final.pth), or a JSON manifest model -> checkpoint")


def _training_info(path: Path, ckpt: dict[str, Any]) -> tuple[int | None, int | None]:
    """(epochs, seed) from the checkpoint ("epochs"|"epoch", "seed"|args.seed), else run.json (max_epoch, seed).

    The trainer counts epochs from 1 and stores the number of completed epochs as "epoch".
    """
    args = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
    epochs = ckpt.get("epochs", ckpt.get("epoch"))
    seed = ckpt.get("seed", args.get("seed"))
    for run_json in (path.parent / RUN_JSON, path.parent.parent / RUN_JSON):
        if run_json.is_file():
            try:
                run = json.loads(run_json.read_text(encoding="utf-8"))
            except ValueError:
                break
            epochs = epochs if isinstance(epochs, int) else run.get("max_epoch")
            seed = seed if isinstance(seed, int) else run.get("seed")
            break
    return (epochs if isinstance(epochs, int) else None), (seed if isinstance(seed, int) else None)
