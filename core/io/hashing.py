"""SHA-256 of a file, read in 1 MiB blocks: the one fingerprint that results, predictions and
weight imports record, so a number can be traced to the exact checkpoint that produced it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of the file's bytes (streamed, so a large checkpoint is never read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
