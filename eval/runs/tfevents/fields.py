"""Protobuf wire-format fields of many messages at once (key, wire type, value bytes), one numpy pass per
field position: the general reading of Event records that do not have add_scalar's fixed layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.runs.tfevents.byte_reads import varint


@dataclass(frozen=True)
class Fields:
    """Every field of a batch of messages, in the order the walk found them (field position by field
    position); `owner` is the index of the message holding each."""

    owner: np.ndarray
    number: np.ndarray
    wire: np.ndarray
    start: np.ndarray  # value bytes: [start, end); a varint's value is in `varint`
    end: np.ndarray
    varint: np.ndarray
    bad: np.ndarray  # per message: malformed (bad key, wire type, length past its end)

    def pick(self, number: int, wire: int) -> np.ndarray:
        return np.flatnonzero((self.number == number) & (self.wire == wire))

    def last(self, rows: np.ndarray) -> np.ndarray:
        """Of `rows` (in walk order), the last one of each owner: protobuf's last-occurrence-wins."""
        owners = self.owner[rows]
        if not rows.size or np.bincount(owners).max() <= 1:
            return rows
        order = np.argsort(owners, kind="stable")
        rows, owners = rows[order], owners[order]
        keep = np.r_[owners[:-1] != owners[1:], True]
        return rows[keep]


def message_fields(data: np.ndarray, start: np.ndarray, end: np.ndarray) -> Fields:
    """Walk the messages data[start:end] together: one numpy pass per field position, not per message."""
    bad = np.zeros(len(start), dtype=bool)
    pos = start.astype(np.int64).copy()
    live = np.flatnonzero(pos < end)
    parts: list[tuple[np.ndarray, ...]] = []
    while live.size:
        p, e = pos[live], end[live]
        key, key_n = varint(data, p)
        wire = (key & np.uint64(7)).astype(np.int64)
        number = (key >> np.uint64(3)).astype(np.int64)
        q = p + key_n
        val = np.zeros(len(q), dtype=np.uint64)
        val_n = np.ones(len(q), dtype=np.int64)
        var = np.flatnonzero((wire == 0) | (wire == 2))  # only these start with a varint
        val[var], val_n[var] = varint(data, q[var])
        is_len = wire == 2
        length = np.minimum(val, np.uint64(1 << 40)).astype(np.int64)
        vstart = q + val_n * is_len
        size = np.choose(np.minimum(wire, 6), [val_n, 8, length, -(1 << 41), -(1 << 41), 4, -(1 << 41)])
        vend = vstart + size
        ok = (key_n > 0) & (number > 0) & (vend >= vstart) & (vend <= e) & (val_n > 0)
        bad[live[~ok]] = True
        good = live[ok]
        parts.append((good, number[ok], wire[ok], vstart[ok], vend[ok], val[ok]))
        pos[good] = vend[ok]
        live = good[pos[good] < end[good]]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Fields(empty, empty, empty, empty, empty, np.zeros(0, dtype=np.uint64), bad)
    cols = [np.concatenate(c) if len(parts) > 1 else c[0] for c in zip(*parts, strict=True)]
    return Fields(*cols, bad=bad)
