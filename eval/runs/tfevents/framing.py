"""TFRecord framing of an event file: record boundaries, then every length and data checksum at once.

Why: a file being written may end in half a record, and a damaged one must stop reading at the first bad
record with a reason ("incomplete", "corrupt") instead of a silently shorter curve.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from eval.runs.tfevents.byte_reads import fixed
from eval.runs.tfevents.crc32c import distance_tables, mask, masked_crc32c_many


@lru_cache(maxsize=1)
def _short_header_crcs() -> np.ndarray:
    """The masked CRC of the 8-byte length field of every record shorter than 64 KiB (two non-zero bytes)."""
    t, c = distance_tables()
    n = np.arange(1 << 16)
    return mask(c[8] ^ t[7][n & 0xFF] ^ t[6][n >> 8])


def headers_ok(buf: bytes, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each record's length checksum against its stored one (a table look-up for the usual short records)."""
    expected = np.empty(len(starts), dtype=np.uint32)
    short = lengths < (1 << 16)
    expected[short] = _short_header_crcs()[lengths[short]]
    long_ = np.flatnonzero(~short)
    expected[long_] = masked_crc32c_many(data, starts[long_], np.full(len(long_), 8, dtype=np.int64))
    return expected == fixed(buf, starts + 8, "<u4")


@dataclass(frozen=True)
class Framing:
    """Whole, CRC-valid records at the start of a buffer: header offsets and payload lengths; `whole` bytes
    of them, and why the scan stopped (None at a clean end, "incomplete", "corrupt")."""

    starts: np.ndarray
    lengths: np.ndarray
    whole: int
    reason: str | None


def follow(buf: bytes) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """Record offsets and payload lengths by following the length fields (the one serial step), where the
    last whole record ends, and why following stopped (None, "incomplete", or "corrupt" for a partial last
    record whose length checksum fails)."""
    starts: list[int] = []
    add = starts.append
    unpack = struct.Struct("<Q").unpack_from
    pos, n, tail = 0, len(buf), None
    while pos < n:
        if n - pos < 12:
            tail = "incomplete"
            break
        nxt = pos + 16 + unpack(buf, pos)[0]
        if nxt > n:
            header_ok = masked_crc32c_many(buf, np.array([pos]), np.array([8]))[0] == struct.unpack_from(
                "<I", buf, pos + 8)[0]
            tail = "incomplete" if header_ok else "corrupt"
            break
        add(pos)
        pos = nxt
    st = np.asarray(starts, dtype=np.int64)
    return st, np.diff(st, append=pos) - 16, pos, tail


def valid_prefix(st: np.ndarray, ln: np.ndarray, pos: int, tail: str | None, ok: np.ndarray) -> Framing:
    bad = np.flatnonzero(~ok)
    if bad.size:
        k = int(bad[0])
        return Framing(st[:k], ln[:k], int(st[k]), "corrupt")
    return Framing(st, ln, pos, tail)


def frame_records(buf: bytes) -> Framing:
    """Follow record boundaries, then verify every length and data checksum at once.

    A bad length can only misplace boundaries after its own record, which fails its header check and
    ends the valid prefix there; nothing after a corrupt record is trusted.
    """
    st, ln, pos, tail = follow(buf)
    if not len(st):
        return Framing(st, ln, 0, tail)
    data = np.frombuffer(buf, dtype=np.uint8)
    ok = headers_ok(buf, data, st, ln) & (masked_crc32c_many(data, st + 12, ln) == fixed(buf, st + 12 + ln, "<u4"))
    return valid_prefix(st, ln, pos, tail, ok)


def scan_records(buf: bytes) -> tuple[int, str | None]:
    """Byte length of the prefix of `buf` made of whole, CRC-valid TFRecords, and why scanning stopped."""
    framing = frame_records(buf)
    return framing.whole, framing.reason
