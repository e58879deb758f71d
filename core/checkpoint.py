"""Checkpoints as plain dicts (state dict + embedded config), saved atomically, loaded weights-only."""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from core.config import config_from_dict
from core.detector import FeatherFace
from core.io.atomic import atomic_write
from core.io.checkpoint_meta import FORMAT, VERSION, CheckpointError  # noqa: F401  (defined there: no torch)
from core.io.cli_paths import read_problem


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
    data = load_torch_file(path, map_location=map_location)
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path} is not a FeatherFace checkpoint (no 'state_dict' entry)")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a FeatherFace checkpoint (format {data.get('format')!r})")
    return data


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # a zip archive with no entry at all
_PICKLE_MAGIC = b"\x80"  # the legacy format (_use_new_zipfile_serialization=False) is a protocol-2+ pickle
_DEFAULT_FIX = "pick the .pth file written by training, or copy the file again"


def load_torch_file(path: Path | str, what: str = "checkpoint", fix: str = _DEFAULT_FIX,
                    error: type[CheckpointError] = CheckpointError,
                    map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(path, weights_only=True)` for every loader of the project, failures explained in words.

    The message says what the file looks like (missing, a folder, empty, text, a tar or numpy file, a zip
    archive cut short or without data.pkl, a pickle that asks for code) and ends with `fix`; torch's own
    errors ("KeyError: 101", "()", a hint to switch the safety check off) never reach the user.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}")
    if path.is_dir():
        raise error(f"{what} {path} is a folder, not a file; {fix}")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or type(exc).__name__}); check its "
                    "permissions") from None
    if size == 0:
        raise error(f"{what} {path} is empty (0 bytes): an interrupted copy or download; {fix}")
    if not head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC, _PICKLE_MAGIC)):
        raise error(f"{path} is not a PyTorch checkpoint: {_foreign_kind(head)}, while torch.save writes a zip "
                    f"archive (starting with 'PK'); {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure is explained below from the file itself
        raise error(describe_load_failure(path, exc, what, fix)) from None


def _foreign_kind(head: bytes) -> str:
    """What a file that is not a torch.save file looks like, from its first bytes."""
    if len(head) > 262 and head[257:262] == b"ustar":
        return "it is a tar archive (RetinaFace's .tar weights are not tar archives: do not pack or unpack them)"
    for magic, name in ((b"\x93NUMPY", "a numpy .npy file"), (b"\x89PNG", "a PNG image"),
                        (b"\xff\xd8\xff", "a JPEG image"), (b"\x1f\x8b", "a gzip file"),
                        (b"\x89HDF", "an HDF5 (Keras/MATLAB 7.3) file"), (b"MATLAB", "a MATLAB .mat file")):
        if head.startswith(magic):
            return f"it is {name}"
    sample = head[:64]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"it is text, starting with {head[:24].decode('ascii', 'replace')!r} (text)"
    return f"it starts with {head[:12]!r} (binary data)"


def describe_load_failure(path: Path, exc: BaseException, what: str = "checkpoint", fix: str = _DEFAULT_FIX) -> str:
    """Why torch.load failed on a file that starts like a torch.save file, in words, from the file's structure."""
    reason = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in reason.lower():
        found = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
        obj = found.group(1) if found else "an object that is not a tensor or plain data"
        return (f"{what} {path} refused: it holds a Python object ({obj}) that could run code when loaded, "
                "so it was not loaded and nothing in it ran (weights_only=True). Files written by this tool "
                "hold only tensors and plain data; do not load this file from elsewhere unless you trust it.")
    size = path.stat().st_size
    with path.open("rb") as f:
        zipped = f.read(4) in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)
    if not zipped:
        return (f"{what} {path} is truncated or corrupt: a legacy (pre-zip) torch.save pickle of {size:,} bytes "
                f"that ends too early or holds damaged data; {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return (f"{what} {path} is truncated or corrupt: a zip archive of {size:,} bytes cut short (its table "
                f"of contents at the end is missing), as after an interrupted copy or download; {fix}")
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") or "nothing"
        return (f"{path} is a zip archive without data.pkl (it holds {shown}), so not a file written by "
                f"torch.save; {fix}")
    if damaged is not None:
        return f"{what} {path} is truncated or corrupt: its entry {damaged} fails its checksum; {fix}"
    return (f"{what} {path} is truncated or corrupt: torch.save's data.pkl is there but cannot be read back "
            f"({type(exc).__name__}); {fix}")


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
        raise CheckpointError(f"checkpoint {path} has an unusable config ({read_problem(exc)})") from None
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
