"""Scalar summaries decoded straight from framed Event records, vectorised over records.

add_scalar-style records are read at fixed offsets (`template`); any other record field by field
(`eval.runs.tfevents.fields`); tensor-valued scalars through tensorboard's protobuf classes. SessionLog.START
events are kept so that `purge_within` can void what a resumed writer overwrote, as TensorBoard does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eval.runs.tfevents.byte_reads import fixed, padded, varint
from eval.runs.tfevents.crc32c import crc_registers, distance_tables
from eval.runs.tfevents.fields import message_fields
from eval.runs.tfevents.scalars import Scalars, concat_scalars, empty_arrays

_START = 1  # SessionLog.START


def _tag_codes(buf: bytes, start: np.ndarray, end: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Distinct tag strings and each value's index into them."""
    return distinct_tags(*tag_codes_exact(buf, start, end))


def tag_codes_exact(buf: bytes, start: np.ndarray, end: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each value's index among the distinct tag byte strings (and their text), without a Python string
    per value: the tag bytes are read as 64-bit words, hashed, factorised, and the grouping verified word
    for word. Two byte strings get two codes even when they decode to one text (invalid UTF-8)."""
    n = end - start
    n_words = -(-int(n.max(initial=0)) // 8)
    if len(start) and 0 < n_words <= 32:
        mix = np.random.default_rng(0x5EED).integers(1, 2**63, size=n_words + 1, dtype=np.uint64) | np.uint64(1)
        words = np.empty((n_words, len(start)), dtype=np.uint64)
        h = n.astype(np.uint64) * mix[0]
        for k in range(n_words):
            valid = np.clip(n - 8 * k, 0, 8).astype(np.uint64)
            keep = np.where(valid == 8, np.uint64(2**64 - 1), (np.uint64(1) << (valid * np.uint64(8))) - np.uint64(1))
            words[k] = fixed(buf, start + 8 * k, "<u8") & keep
            h += words[k] * mix[k + 1]
        codes, uniques = pd.factorize(h)
        rep = np.unique(codes, return_index=True)[1]  # the first value of each hash
        if np.array_equal(words, words[:, rep[codes]]) and np.array_equal(n, n[rep[codes]]):
            tags = [buf[s:e].decode("utf-8", errors="replace") for s, e in zip(start[rep], end[rep], strict=True)]
            return tags, codes.astype(np.int32)
    raw = [buf[s:e] for s, e in zip(start.tolist(), end.tolist(), strict=True)]
    codes, uniques = pd.factorize(pd.Series(raw, dtype=object))
    return [u.decode("utf-8", errors="replace") for u in uniques], codes.astype(np.int32)


def distinct_tags(tags: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Merge tags that decode to the same text (invalid UTF-8 replaced): categories must be unique."""
    vocab: dict[str, int] = {}
    lut = np.array([vocab.setdefault(t, len(vocab)) for t in tags], dtype=np.int32)
    return list(vocab), lut[codes] if len(lut) else codes.astype(np.int32)


@dataclass(frozen=True)
class Decoded:
    """What a batch of whole records holds: scalars, the SessionLog.START events as (record, step), the first
    wall time, and the byte offsets of records that are not valid Event protobufs (skipped)."""

    scalars: Scalars
    value_record: np.ndarray  # record index of each scalar
    starts: tuple[tuple[int, int], ...]
    first_wall_time: float
    malformed: tuple[int, ...]
    records: int = 0


@dataclass(frozen=True)
class Values:
    """Scalar values found in some records: record index, tag bytes [tag_start, tag_end), step, value, wall."""

    rec: np.ndarray
    tag_start: np.ndarray
    tag_end: np.ndarray
    step: np.ndarray
    value: np.ndarray
    wall: np.ndarray


def template(buf: bytes, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray
              ) -> tuple[np.ndarray, Values, np.ndarray]:
    """The records laid out exactly as SummaryWriter.add_scalar writes them, read at fixed offsets:

        09 <wall_time f64> [10 <step varint>] 2A <n+9> 0A <n+7> 0A <n> <tag: n bytes> 15 <simple_value f32>

    (Event{wall_time, step, summary{value{tag, simple_value}}}, nothing else, lengths below 128). Such a
    record has this one reading under protobuf's rules; every other record goes through `_walk`. Also
    returns, per matched record, the byte count of its step varint (0: no step field).
    """
    p = starts + 12
    ok = data[p] == 0x09
    q = p + 9
    has_step = data[q] == 0x10
    step = np.zeros(len(p), dtype=np.int64)
    step_bytes = np.zeros(len(p), dtype=np.int64)
    with_step = np.flatnonzero(has_step & ok)
    value, count = varint(data, q[with_step] + 1)
    step[with_step] = value.view(np.int64)
    step_bytes[with_step] = count
    q = q.copy()
    q[with_step] += 1 + count
    ok[with_step[count == 0]] = False
    n1, n2, n3 = data[q + 1].astype(np.int64), data[q + 3].astype(np.int64), data[q + 5].astype(np.int64)
    ok &= (data[q] == 0x2A) & (data[q + 2] == 0x0A) & (data[q + 4] == 0x0A) & (n1 < 0x80)
    ok &= (n2 == n1 - 2) & (n3 == n1 - 9)
    tag_start = q + 6
    tag_end = tag_start + n3
    ok &= (tag_end + 5 == p + lengths)
    ok[ok] &= data[tag_end[ok]] == 0x15
    hit = np.flatnonzero(ok)
    values = Values(hit, tag_start[hit], tag_end[hit], step[hit],
                     fixed(buf, tag_end[hit] + 1, "<f4").astype(np.float64), fixed(buf, p[hit] + 1, "<f8"))
    return ok, values, step_bytes[hit]


def template_registers(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, values: Values,
                        step_bytes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """CRC registers of the `template` records without reading all their bytes.

    Records of one tag and one step width differ only in wall_time, the step varint and the value: every
    other byte (structure checked by `template`, tag bytes checked equal by `_tag_codes`) is the same, at
    the same distance from the end. CRC-32C being linear, a record's register is its group's first
    record's register (computed in full) xor what its differing bytes change: 12-22 table look-ups per
    record instead of one per byte.
    """
    t, _ = distance_tables()
    rec = values.rec
    p, n = starts[rec] + 12, lengths[rec]
    varying = np.zeros(len(rec), dtype=np.uint32)
    for o in range(1, 9):  # wall_time
        varying ^= t[n - 1 - o, data[p + o]]
    for o in range(4):  # simple_value: the last 4 bytes
        varying ^= t[3 - o, data[p + n - 4 + o]]
    for j in range(int(step_bytes.max(initial=0))):  # step varint after its key at offset 9
        sel = np.flatnonzero(step_bytes > j)
        varying[sel] ^= t[n[sel] - 11 - j, data[p[sel] + 10 + j]]
    group = codes.astype(np.int64) * 16 + step_bytes
    _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    full = crc_registers(data, p[first], n[first])
    return full[inverse] ^ varying ^ varying[first][inverse]


@dataclass(frozen=True)
class _Walk:
    values: Values
    wall: np.ndarray  # per record
    bad: np.ndarray  # per record: not a valid Event
    slow: np.ndarray  # per record: holds a tensor value (protobuf path)
    start_events: list[tuple[int, int]]


def _walk(buf: bytes, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> _Walk:
    """Any Event records, field by field (`message_fields`): the general reading behind `template`."""
    n_rec = len(starts)
    ev = message_fields(data, starts + 12, starts + 12 + lengths)
    bad = ev.bad.copy()
    wall = np.zeros(n_rec, dtype=np.float64)
    rows = ev.last(ev.pick(1, 1))
    wall[ev.owner[rows]] = fixed(buf, ev.start[rows], "<f8")
    step = np.zeros(n_rec, dtype=np.int64)
    rows = ev.last(ev.pick(2, 0))
    step[ev.owner[rows]] = ev.varint[rows].view(np.int64)

    sessions = ev.pick(7, 2)  # Event.session_log; SessionLog.status is its field 1
    start_events: list[tuple[int, int]] = []
    if sessions.size:
        sl = message_fields(data, ev.start[sessions], ev.end[sessions])
        bad[ev.owner[sessions[sl.bad]]] = True
        status = sl.last(sl.pick(1, 0))
        is_start = status[sl.varint[status] == _START]
        recs = ev.owner[sessions[sl.owner[is_start]]]
        start_events = [(int(r), int(step[r])) for r in recs]

    summaries = ev.pick(5, 2)
    sm = message_fields(data, ev.start[summaries], ev.end[summaries])
    bad[ev.owner[summaries[sm.bad]]] = True
    vrows = sm.pick(1, 2)
    value_event = ev.owner[summaries[sm.owner[vrows]]]
    vf = message_fields(data, sm.start[vrows], sm.end[vrows])
    bad[value_event[vf.bad]] = True
    # Value is a oneof (simple_value 2, obsolete histogram 3, image 4, histo 5, audio 6, tensor 8):
    # the last member on the wire is the one set. A tensor sends its whole record to the protobuf path.
    last_member = vf.last(np.flatnonzero(np.isin(vf.number, (2, 3, 4, 5, 6, 8))))
    kind = np.zeros(len(vrows), dtype=np.int64)
    kind[vf.owner[last_member]] = np.where(vf.wire[last_member] == 5, vf.number[last_member], -1)
    kind[vf.owner[last_member][vf.number[last_member] == 8]] = 8
    slow = np.zeros(n_rec, dtype=bool)
    slow[value_event[kind == 8]] = True
    slow &= ~bad

    sv = np.full(len(vrows), np.nan, dtype=np.float64)
    sv_rows = vf.last(vf.pick(2, 5))
    sv[vf.owner[sv_rows]] = fixed(buf, vf.start[sv_rows], "<f4")
    tag_rows = vf.last(vf.pick(1, 2))
    tag_start = np.zeros(len(vrows), dtype=np.int64)
    tag_end = np.zeros(len(vrows), dtype=np.int64)
    tag_start[vf.owner[tag_rows]] = vf.start[tag_rows]
    tag_end[vf.owner[tag_rows]] = vf.end[tag_rows]
    keep = np.flatnonzero((kind == 2) & ~bad[value_event] & ~slow[value_event])
    rec = value_event[keep]
    values = Values(rec, tag_start[keep], tag_end[keep], step[rec], sv[keep], wall[rec])
    return _Walk(values, wall, bad, slow, start_events)


def decode_records(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> Decoded:
    """Scalar summaries of the framed records (`frame_records`) of `buf`, vectorised over records: the
    common layout at fixed offsets (`template`), the rest field by field (`_walk`)."""
    if not len(starts):
        return Decoded(empty_arrays(), np.zeros(0, np.int64), (), float("inf"), ())
    data = padded(buf)
    matched, fast, _ = template(buf, data, starts, lengths)
    tags, codes = _tag_codes(buf, fast.tag_start, fast.tag_end)
    return decode_framed(buf, data, starts, lengths, matched, fast, tags, codes)


def decode_framed(buf: bytes, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, matched: np.ndarray,
            fast: Values, tags: list[str], codes: np.ndarray) -> Decoded:
    """`decode_records` given the `template` reading (and its tag codes) of the same records."""
    n_rec = len(starts)
    rest = np.flatnonzero(~matched)
    walk = _walk(buf, data, starts[rest], lengths[rest])
    other = walk.values
    other_tags, other_codes = _tag_codes(buf, other.tag_start, other.tag_end)
    scalars = concat_scalars([Scalars(tuple(tags), codes, fast.step, fast.value, fast.wall),
                              Scalars(tuple(other_tags), other_codes, other.step, other.value, other.wall)])
    rec = np.concatenate([fast.rec, rest[other.rec]])
    slow = rest[walk.slow]
    if slow.size:
        extra, extra_rec = _decode_slow(buf, starts, lengths, slow)
        scalars = concat_scalars([scalars, extra])
        rec = np.concatenate([rec, extra_rec])
    if rec.size and (rec[1:] < rec[:-1]).any():  # interleaved records: back to file order
        order = np.argsort(rec, kind="stable")
        scalars, rec = scalars.take(order), rec[order]
    wall = np.zeros(n_rec, dtype=np.float64)
    wall[fast.rec] = fast.wall
    wall[rest] = walk.wall
    bad = np.zeros(n_rec, dtype=bool)
    bad[rest] = walk.bad
    head = wall[:4][~bad[:4]]
    first = float(head[head > 0].min()) if (head > 0).any() else float("inf")
    start_events = tuple((int(rest[r]), step) for r, step in walk.start_events)
    return Decoded(scalars, rec, start_events, first, tuple(int(starts[i]) for i in np.flatnonzero(bad)), n_rec)


def _decode_slow(buf: bytes, starts: np.ndarray, lengths: np.ndarray, records: np.ndarray
                 ) -> tuple[Scalars, np.ndarray]:
    """Tensor-valued scalars (plugin "scalars", one element) of the given records, through protobuf."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    tags, code, step, value, wall, rec = [], [], [], [], [], []
    vocab: dict[str, int] = {}
    for r in records.tolist():
        s = int(starts[r]) + 12
        event = event_pb2.Event.FromString(buf[s:s + int(lengths[r])])
        for v in event.summary.value:
            if v.WhichOneof("value") == "simple_value":
                x = float(v.simple_value)
            elif (v.WhichOneof("value") == "tensor" and v.metadata.plugin_data.plugin_name == "scalars"):
                arr = tensor_util.make_ndarray(v.tensor)
                if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
                    continue
                x = float(arr.reshape(-1)[0])
            else:
                continue
            code.append(vocab.setdefault(v.tag, len(vocab)))
            step.append(event.step)
            value.append(x)
            wall.append(event.wall_time)
            rec.append(r)
    tags = list(vocab)
    return (Scalars(tuple(tags), np.asarray(code, np.int32), np.asarray(step, np.int64), np.asarray(value, np.float64),
                    np.asarray(wall, np.float64)), np.asarray(rec, np.int64))


def purge_within(decoded: Decoded) -> Scalars:
    """The batch's scalars less those a later SessionLog.START voids (earlier record, step >= its step)."""
    s = decoded.scalars
    if not decoded.starts or not len(s):
        return s
    limit = np.full(decoded.records, np.iinfo(np.int64).max, dtype=np.int64)
    for record, step in decoded.starts:
        limit[record] = min(limit[record], step)
    after = np.minimum.accumulate(limit[::-1])[::-1]  # min START step at or after each record
    later = np.r_[after[1:], np.iinfo(np.int64).max]  # ... strictly after it
    return s.take(s.step < later[decoded.value_record])
