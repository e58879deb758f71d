"""Event files read incrementally and cached: only the bytes a growing file gained since the last read are decoded,
and the decoded scalars are kept on disk between app starts (FEATHERFACE_CACHE_DIR)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.io.atomic import atomic_write_bytes
from core.io.cli_paths import read_problem
from eval.runs.event_files import read_records
from eval.runs.tfevents.decode import purge_within
from eval.runs.tfevents.scalars import Scalars, concat_scalars, empty_arrays

CACHE_ENV = "FEATHERFACE_CACHE_DIR"


_DISK_VERSION = 1


_DISK_MIN_NEW = 256 * 1024  # a growing file's entry is rewritten once this many new bytes were decoded


def cache_root() -> Path:
    """The app's cache folder: $FEATHERFACE_CACHE_DIR, else ~/.cache/featherface_lab (never inside a data
    root, which may be read-only). Everything in it can be deleted at any time."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "featherface_lab"


def default_cache_dir() -> Path:
    """Where the dashboard keeps decoded event files between restarts."""
    return cache_root() / "events"


@dataclass
class _FileState:
    size: int = -1
    mtime_ns: int = -1
    offset: int = 0  # bytes of whole valid records already decoded
    head: bytes = b""  # first bytes, to notice a file rewritten from scratch
    chunks: list[Scalars] = field(default_factory=list)
    problem: str | None = None
    parses: int = 0  # how many times new records were decoded (tests check reads are incremental)
    purge_step: int | None = None  # smallest SessionLog.START step: earlier files' events at >= it are void
    first_wall_time: float = float("inf")
    merged: Scalars | None = None
    malformed: list[int] = field(default_factory=list)  # byte offsets of valid-CRC records that are not Events
    saved_offset: int = -1  # offset of the disk entry last written or read


@dataclass(frozen=True)
class FileRead:
    """Scalars of one event file as of now, plus a warning when part of it could not be read."""

    path: Path
    arrays: Scalars
    warning: str | None
    parses: int
    purge_step: int | None = None
    first_wall_time: float = float("inf")

    @property
    def scalars(self) -> pd.DataFrame:
        return self.arrays.frame()


class EventCache:
    """Per-file incremental reader, keyed by path and invalidated by (size, mtime).

    One instance is shared by all dashboard sessions (hence the lock); tests use their own. With `disk`, a
    file's decoded scalars and read position are also kept there (keyed by the file's path, checked against
    its size, mtime and first bytes), so a restarted app reads only what was appended since.
    """

    def __init__(self, disk: Path | str | None = None) -> None:
        self._files: dict[Path, _FileState] = {}
        self._lock = threading.Lock()
        self.disk = Path(disk) if disk is not None else None

    def read(self, path: Path | str) -> FileRead:
        path = Path(path)
        with self._lock:
            state = self._files.get(path)
            if state is None:
                state = self._files[path] = self._from_disk(path) or _FileState()
            try:
                self._refresh(path, state)
            except OSError as exc:
                state.problem = f"{path}: unreadable ({read_problem(exc)})"
            if state.merged is None:
                state.merged = concat_scalars(state.chunks)
                state.chunks = [state.merged] if len(state.merged) else []
            if self.disk is not None and state.offset and (
                    state.saved_offset < 0 or state.offset - state.saved_offset >= _DISK_MIN_NEW):
                self._to_disk(path, state)
            return FileRead(path=path, arrays=state.merged, warning=state.problem, parses=state.parses,
                            purge_step=state.purge_step, first_wall_time=state.first_wall_time)

    def _entry(self, path: Path) -> Path:
        key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
        return self.disk / f"{key}.npz"  # type: ignore[operator]

    def _from_disk(self, path: Path) -> _FileState | None:
        """The state saved by an earlier process, if it still describes the start of this file."""
        if self.disk is None:
            return None
        try:
            with np.load(self._entry(path)) as z:  # numpy refuses pickled objects by default
                meta = json.loads(str(z["meta"]))
                arrays = Scalars(tuple(str(t) for t in z["tags"]), z["code"].astype(np.int32),
                                 z["step"].astype(np.int64), z["value"].astype(np.float64),
                                 z["wall_time"].astype(np.float64))
            head = bytes.fromhex(meta["head"])
            with path.open("rb") as f:
                same_start = f.read(len(head)) == head
            if meta.get("version") != _DISK_VERSION or meta.get("path") != str(path.resolve()) or not same_start:
                return None
            if path.stat().st_size < meta["offset"]:
                return None
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            return None  # absent, stale or damaged: decode the file again
        return _FileState(offset=int(meta["offset"]), head=head, chunks=[arrays] if len(arrays) else [],
                          purge_step=meta["purge_step"], first_wall_time=float(meta["first_wall_time"]),
                          malformed=list(meta["malformed"]), saved_offset=int(meta["offset"]))

    def _to_disk(self, path: Path, state: _FileState) -> None:
        s = state.merged or empty_arrays()
        meta = {"version": _DISK_VERSION, "path": str(path.resolve()), "offset": state.offset,
                "head": state.head.hex(), "purge_step": state.purge_step,
                "first_wall_time": state.first_wall_time,
                "malformed": state.malformed}
        out = io.BytesIO()
        np.savez(out, meta=np.array(json.dumps(meta)), tags=np.array(list(s.tags) or [""], dtype=str)[:len(s.tags)],
                 code=s.code, step=s.step, value=s.value, wall_time=s.wall_time)
        try:
            atomic_write_bytes(self._entry(path), out.getvalue(), fsync=False)
        except OSError:
            return  # a read-only or full cache folder only costs speed
        state.saved_offset = state.offset

    def _refresh(self, path: Path, state: _FileState) -> None:
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == (state.size, state.mtime_ns):
            return
        with path.open("rb") as f:
            head = f.read(64)
            rewritten = stat.st_size < state.offset or head[:len(state.head)] != state.head
            if rewritten:
                state.offset, state.chunks, state.head, state.merged = 0, [], b"", None
                state.purge_step, state.first_wall_time, state.malformed = None, float("inf"), []
                state.saved_offset = -1
            f.seek(state.offset)
            new = f.read(stat.st_size - state.offset)
        state.size, state.mtime_ns = stat.st_size, stat.st_mtime_ns
        if not state.head:
            state.head = head
        framing, decoded = read_records(new)
        problems = []
        if framing.whole:
            if state.offset == 0:
                state.first_wall_time = decoded.first_wall_time
            if decoded.starts:  # a restart inside this file voids what the earlier reads hold at >= its step
                first = min(step for _, step in decoded.starts)
                state.chunks = [c.take(c.step < first) for c in state.chunks]
                state.purge_step = first if state.purge_step is None else min(state.purge_step, first)
            state.chunks.append(purge_within(decoded))
            state.merged = None
            state.parses += 1
            state.malformed += [state.offset + b for b in decoded.malformed]
            state.offset += framing.whole
        if state.malformed:
            at = ", ".join(map(str, state.malformed[:3])) + ("…" if len(state.malformed) > 3 else "")
            problems.append(f"{path}: {len(state.malformed)} record(s) with valid checksums but not a readable "
                            f"Event (at byte {at}): skipped")
        left = len(new) - framing.whole
        if framing.reason == "corrupt":
            problems.append(f"{path}: corrupt record at byte {state.offset} (checksum mismatch); "
                            f"the last {left} bytes are ignored")
        elif framing.reason == "incomplete":
            problems.append(f"{path}: incomplete last record ({left} bytes at byte {state.offset}): "
                            f"the file is truncated, or still being written")
        state.problem = "; ".join(problems) or None


_DEFAULT_CACHE: EventCache | None = None


_DEFAULT_LOCK = threading.Lock()


def default_cache() -> EventCache:
    """The process-wide cache (the dashboard keeps using it across reruns and sessions), backed by
    `default_cache_dir()` so an app restart does not decode unchanged files again."""
    global _DEFAULT_CACHE
    with _DEFAULT_LOCK:
        if _DEFAULT_CACHE is None:
            _DEFAULT_CACHE = EventCache(disk=default_cache_dir())
        return _DEFAULT_CACHE
