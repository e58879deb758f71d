"""Checkpoints as plain dicts (state dict + embedded config), saved atomically, loaded weights-only."""

from __future__ import annotations

import pickle
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_write
from core.checkpoint_meta import FORMAT, VERSION, CheckpointError  # noqa: F401  (defined there: no torch)
from core.config import config_from_dict
from core.detector import FeatherFace


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """`torch.save` through a temp file + rename: a crash never leaves half a checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: Path | str, model: FeatherFace, **extra: Any) -> None:
    """Save weights with the model name and config; `extra` (epoch, optimizer state, ...) rides along."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    cfg = _unwrap(model).cfg
    atomic_torch_save({"format": FORMAT, "version": VERSION, "model_name": cfg.name, "config": asdict(cfg),
                       "state_dict": state, **extra}, path)


def read_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict with `weights_only=True`; raise `CheckpointError` on problems."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    _check_torch_file(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read ({exc})") from exc
        raise CheckpointError(_refused_message(path, str(exc))) from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read ({exc})") from exc
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path} is not a FeatherFace checkpoint (no 'state_dict' entry)")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a FeatherFace checkpoint (format {data.get('format')!r})")
    return data


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_MAGIC = b"\x80"  # the legacy format (_use_new_zipfile_serialization=False) is a protocol-2+ pickle


def _check_torch_file(path: Path) -> None:
    """Refuse, with the reason, a file that cannot be a torch.save file at all (text, CSV, JSON, an image...):
    torch's own errors for those are a bare KeyError or a misleading weights-only warning."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc})") from None
    if head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return
    kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint: it starts with {head[:12]!r} ({kind}), while "
                          "torch.save writes a zip archive (starting with 'PK'); pick the .pth file written by "
                          "training")


def _refused_message(path: Path, reason: str) -> str:
    """Name what a weights-only load refused, instead of torch's advice to switch the check off."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
    what = found.group(1) if found else "an object that is not a tensor or plain data"
    return (f"checkpoint {path} refused: it holds a Python object ({what}) that could run code when loaded, "
            "so it was not loaded and nothing in it ran (weights_only=True). Checkpoints written by this tool "
            "hold only tensors and plain data; do not load this file from elsewhere unless you trust it.")


def load_checkpoint(
    path: Path | str, expected_name: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[FeatherFace, dict[str, Any]]:
    """Rebuild the model stored in `path`; if `expected_name` is given, refuse another variant."""
    data = read_checkpoint(path, map_location)
    name = data.get("model_name")
    if expected_name is not None and name != expected_name:
        raise CheckpointError(f"checkpoint {path} holds model {name!r}, but {expected_name!r} was requested")
    try:
        model = FeatherFace(config_from_dict(data["config"]))
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unusable config ({exc})") from exc
    load_weights(model, data["state_dict"], source=str(path))
    return model.to(map_location), data


def load_weights(model: FeatherFace, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Strict load with a message that names the missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not fit model {model.name!r}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(shapes)} shape mismatches {shapes[:3]}"
        )
    model.load_state_dict(state_dict)


def _unwrap(model: torch.nn.Module) -> FeatherFace:
    """Strip DistributedDataParallel / torch.compile wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)
