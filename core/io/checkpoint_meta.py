"""A checkpoint's metadata (model name, dataset, epochs, origin) read without importing torch.

Why: the dashboard's sidebar lists every checkpoint under its folders on each cold start; reading them
with torch costs the torch import (seconds) plus every tensor. A torch.save file is a zip whose
`data.pkl` holds the dict; unpickled here with only plain containers allowed and every tensor replaced by
a placeholder, it gives the same metadata in milliseconds. Whenever this reader is not sure (legacy
format, an unexpected global, not one of our checkpoints), it answers None and the caller reads the file
with `core.checkpoint.read_checkpoint`, which validates it fully and words every refusal.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

FORMAT = "featherface-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt, or for a different variant; the message says which."""


class _Unsure(Exception):
    """Something this reader does not vouch for: leave the file to torch."""


TENSOR = "<tensor>"  # what every tensor reads as here


def _tensor(*_args: Any) -> str:
    return TENSOR


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


_REBUILDERS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
               ("torch._utils", "_rebuild_parameter_with_state"), ("torch._tensor", "_rebuild_from_type_v2")}
_PLAIN = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
          ("builtins", "frozenset"): frozenset}


class _MetaUnpickler(pickle.Unpickler):
    """Plain containers and tensor placeholders only: nothing from the file is ever called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN:
            return _PLAIN[(module, name)]
        if (module, name) in _REBUILDERS:
            return _tensor
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise _Unsure(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> str:
        return TENSOR


def read_checkpoint_meta(path: Path | str) -> dict[str, Any] | None:
    """The checkpoint dict with tensors as placeholders, or None when torch must read the file (see above)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                return None
            with archive.open(pickles[0]) as f:
                data = _MetaUnpickler(f).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, _Unsure, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, RecursionError):
        return None
    if not isinstance(data, dict) or "state_dict" not in data or data.get("format") != FORMAT:
        return None
    return data
