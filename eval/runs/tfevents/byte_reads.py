"""Numbers read at many byte offsets of a buffer at once: little-endian fixed-width values and varints.

Why: framing and decoding read the same few fields from every record of an event file; one numpy gather per
field for all records replaces a Python loop per record.
"""

from __future__ import annotations

import numpy as np

_PAD = 16  # zero bytes appended to a buffer so a varint read never indexes past its end


def padded(buf: bytes) -> np.ndarray:
    return np.concatenate([np.frombuffer(buf, dtype=np.uint8), np.zeros(_PAD, dtype=np.uint8)])


def varint(data: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (uint64) and byte counts of the varints at `pos`; a count of 0 marks one longer than 10 bytes."""
    b = data[pos]
    value = (b & 0x7F).astype(np.uint64)
    count = np.ones(len(pos), dtype=np.int64)
    more = np.flatnonzero(b >= 0x80)
    for k in range(1, 10):
        if not more.size:
            return value, count
        b = data[pos[more] + k]
        value[more] |= (b & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        count[more] += 1
        more = more[b >= 0x80]
    count[more] = 0
    return value, count


def fixed(buf: bytes, at: np.ndarray, dtype: str) -> np.ndarray:
    """Little-endian numbers (4 or 8 bytes) at arbitrary byte offsets: each is cut out of the two aligned
    64-bit words around it, so there are two gathers per number instead of one per byte."""
    kind = np.dtype(dtype)
    if not len(at):
        return np.zeros(0, dtype=kind)
    words = _words(buf)
    lo, hi = words[at >> 3], words[(at >> 3) + 1]
    shift = ((at & 7) * 8).astype(np.uint64)
    value = (lo >> shift) | ((hi << np.uint64(1)) << (np.uint64(63) - shift))
    if kind.itemsize == 4:
        return (value & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(kind)
    return value.view(kind)


_WORDS: dict[int, tuple[bytes, np.ndarray]] = {}


def _words(buf: bytes) -> np.ndarray:
    """`buf` as little-endian uint64 words, zero-padded by two words so any offset's pair exists (the last
    buffer's words are kept: framing and decoding read the same buffer several times)."""
    hit = _WORDS.get(id(buf))
    if hit is not None and hit[0] is buf:
        return hit[1]
    words = np.frombuffer(buf + bytes(16 + (-len(buf)) % 8), dtype="<u8")
    _WORDS.clear()
    _WORDS[id(buf)] = (buf, words)
    return words
