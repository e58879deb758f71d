"""TensorBoard event files read incrementally, with truncated and corrupt records reported.

Why our own TFRecord framing in front of tbparse: runs are read while training still writes them, so a
file's tail may hold half a record, and a damaged file must become a counted warning instead of silently
shorter curves. tensorboard's own `RawEventFileLoader` does read a growing file incrementally, but it
treats a truncated tail and a failed checksum alike and silently (a debug log line), stops for good at a
corrupt record, and checks CRCs in pure Python per record; tests/test_event_files.py shows what it misses.
Each file is framed once (length + CRC checks of TFRecord, vectorised); only the new, whole, valid records
since the last read are handed to tbparse, so a growing 50 MB file costs only its new bytes.
"""

from __future__ import annotations

import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

EVENT_GLOB = "events.out.tfevents.*"
SCALAR_COLUMNS: tuple[str, ...] = ("tag", "step", "value", "wall_time")


def _masked_crc32c(data: bytes) -> int:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c(data)


_LONG_RECORD = 4096  # longer payloads (graphs, images) are checked one by one


def _masked_crc32c_many(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of many byte ranges at once: the per-byte update runs across all ranges in numpy.

    The pure-Python CRC of TensorBoard's reader costs about as much as parsing itself; this makes the
    framing check ~50x cheaper. Ranges are sorted by length so step j only touches those longer than j.
    """
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import CRC_TABLE

    table = np.asarray(CRC_TABLE, dtype=np.uint32)
    data = np.frombuffer(buf, dtype=np.uint8)
    out = np.zeros(len(starts), dtype=np.uint32)
    short = lengths <= _LONG_RECORD
    order = np.flatnonzero(short)[np.argsort(-lengths[short], kind="stable")]
    s, n = starts[order], lengths[order]
    crc = np.full(len(order), 0xFFFFFFFF, dtype=np.uint32)
    neg = -n
    for j in range(int(n.max()) if len(n) else 0):
        k = int(np.searchsorted(neg, -j, side="left"))  # ranges longer than j
        crc[:k] = table[(crc[:k] ^ data[s[:k] + j]) & 0xFF] ^ (crc[:k] >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    out[order] = ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)
    for i in np.flatnonzero(~short):
        out[i] = _masked_crc32c(buf[starts[i]:starts[i] + lengths[i]])
    return out


def scan_records(buf: bytes) -> tuple[int, str | None]:
    """Byte length of the prefix of `buf` made of whole, CRC-valid TFRecords, and why scanning stopped.

    The reason is None at a clean end, "incomplete" for a partial last record (file truncated, or
    a writer mid-flush) and "corrupt" for a failed length/data checksum (nothing after it is trusted).
    Record boundaries are followed first, then every checksum is verified at once; a bad length can
    only misplace boundaries after its own record, which fails its header check and ends the prefix.
    """
    starts: list[int] = []
    lengths: list[int] = []
    pos, n, tail = 0, len(buf), None
    while pos < n:
        if n - pos < 12:
            tail = "incomplete"
            break
        (length,) = struct.unpack_from("<Q", buf, pos)
        if pos + 16 + length > n:
            header_ok = _masked_crc32c(buf[pos:pos + 8]) == struct.unpack_from("<I", buf, pos + 8)[0]
            tail = "incomplete" if header_ok else "corrupt"
            break
        starts.append(pos)
        lengths.append(length)
        pos += 16 + length
    if not starts:
        return 0, tail
    st, ln = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    header_ok = _masked_crc32c_many(buf, st, np.full(len(st), 8, dtype=np.int64)) == np.frombuffer(
        b"".join(buf[p + 8:p + 12] for p in starts), dtype="<u4")
    data_ok = _masked_crc32c_many(buf, st + 12, ln) == np.frombuffer(
        b"".join(buf[p + 12 + q:p + 16 + q] for p, q in zip(starts, lengths, strict=True)), dtype="<u4")
    bad = np.flatnonzero(~(header_ok & data_ok))
    if bad.size:
        return int(st[bad[0]]), "corrupt"
    return pos, tail


def file_start(data: bytes, records: int = 4) -> tuple[float, int | None]:
    """Wall time of the first event, and the purge step if the writer started with SessionLog.START.

    torch's SummaryWriter(purge_step=T) (a resumed run) writes that START event first; TensorBoard then
    hides every earlier event at step >= T, and so must we (tbparse reads files one by one).
    """
    from tensorboard.compat.proto import event_pb2

    wall, purge, pos = float("inf"), None, 0
    for _ in range(records):
        if pos + 12 > len(data):
            break
        length = struct.unpack_from("<Q", data, pos)[0]
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        wall = min(wall, event.wall_time) if event.wall_time else wall
        if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
            purge = int(event.step)
        pos += 16 + length
    return wall, purge


def parse_records(data: bytes) -> pd.DataFrame:
    """Scalars (tag, step, value, wall_time) of a run of whole event records, parsed by tbparse."""
    from tbparse import SummaryReader

    if not data:
        return empty_scalars()
    with tempfile.TemporaryDirectory(prefix="ff_tb_") as tmp:
        path = Path(tmp) / "events.out.tfevents.chunk"  # tbparse only reads files named like event files
        path.write_bytes(data)
        frame = SummaryReader(str(path), extra_columns={"wall_time"}).scalars
    if frame.empty:
        return empty_scalars()
    return frame.reindex(columns=list(SCALAR_COLUMNS)).astype({"step": "int64", "value": "float64"})


def empty_scalars() -> pd.DataFrame:
    return pd.DataFrame({"tag": pd.Series(dtype=str), "step": pd.Series(dtype="int64"),
                         "value": pd.Series(dtype="float64"), "wall_time": pd.Series(dtype="float64")})


@dataclass
class _FileState:
    size: int = -1
    mtime_ns: int = -1
    offset: int = 0  # bytes of whole valid records already parsed
    head: bytes = b""  # first bytes, to notice a file rewritten from scratch
    chunks: list[pd.DataFrame] = field(default_factory=list)
    problem: str | None = None
    parses: int = 0  # how many times tbparse ran on this file (tests check reads are incremental)
    purge_step: int | None = None  # a resumed writer's SessionLog.START step: older events at >= it are void
    first_wall_time: float = float("inf")


@dataclass(frozen=True)
class FileRead:
    """Scalars of one event file as of now, plus a warning when part of it could not be read."""

    path: Path
    scalars: pd.DataFrame
    warning: str | None
    parses: int
    purge_step: int | None = None
    first_wall_time: float = float("inf")


class EventCache:
    """Per-file incremental reader, keyed by path and invalidated by (size, mtime).

    One instance is shared by all dashboard sessions (hence the lock); tests use their own.
    """

    def __init__(self) -> None:
        self._files: dict[Path, _FileState] = {}
        self._lock = threading.Lock()

    def read(self, path: Path | str) -> FileRead:
        path = Path(path)
        with self._lock:
            state = self._files.setdefault(path, _FileState())
            try:
                self._refresh(path, state)
            except OSError as exc:
                state.problem = f"{path}: unreadable ({exc})"
            frame = pd.concat(state.chunks, ignore_index=True) if state.chunks else empty_scalars()
            return FileRead(path=path, scalars=frame, warning=state.problem, parses=state.parses,
                            purge_step=state.purge_step, first_wall_time=state.first_wall_time)

    def _refresh(self, path: Path, state: _FileState) -> None:
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == (state.size, state.mtime_ns):
            return
        with path.open("rb") as f:
            head = f.read(64)
            rewritten = stat.st_size < state.offset or head[:len(state.head)] != state.head
            if rewritten:
                state.offset, state.chunks, state.head = 0, [], b""
            f.seek(state.offset)
            new = f.read(stat.st_size - state.offset)
        state.size, state.mtime_ns = stat.st_size, stat.st_mtime_ns
        if not state.head:
            state.head = head
        whole, reason = scan_records(new)
        if whole and state.offset == 0:
            state.first_wall_time, state.purge_step = file_start(new[:whole])
        if whole:
            try:
                state.chunks.append(parse_records(new[:whole]))
            except Exception as exc:  # noqa: BLE001 - a valid frame with odd protobuf content must not crash a page
                state.problem = f"{path}: tbparse could not parse {whole} bytes at offset {state.offset} ({exc})"
                return
            state.parses += 1
            state.offset += whole
        left = len(new) - whole
        if reason == "corrupt":
            state.problem = (f"{path}: corrupt record at byte {state.offset} (checksum mismatch); "
                             f"the last {left} bytes are ignored")
        elif reason == "incomplete":
            state.problem = (f"{path}: incomplete last record ({left} bytes at byte {state.offset}): "
                             f"the file is truncated, or still being written")
        else:
            state.problem = None


_DEFAULT_CACHE = EventCache()


def default_cache() -> EventCache:
    """The process-wide cache (the dashboard keeps using it across reruns and sessions)."""
    return _DEFAULT_CACHE
