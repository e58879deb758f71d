"""Atomic file writes (temp file in the same folder, then `os.replace`): a crash or kill mid-write
never leaves a half-written checkpoint, results file or prediction file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o644  # mkstemp creates 0600 files; results and datasets are meant to be shared


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None], fsync: bool = True) -> None:
    """Call `write(fileobj)` on a temp file, then rename it over `path`.

    `fsync=False` keeps atomicity but skips the disk flush, for the thousands of small prediction
    files where durability across a power cut matters less than speed.
    """
    path = Path(path)
    if path.is_dir():  # the last guard: os.replace would fail only after the whole file was written
        raise IsADirectoryError(f"cannot write {path}: it is a folder; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(f"cannot write {path}: {blocker} is a file, not a folder") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), fsync)


def atomic_write_text(path: Path | str, text: str, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync)
