"""What tensorboard's own event-file loader misses, why eval.runs.event_files reads the files itself, and its values
against tbparse (the oracle) on every kind of event file the project meets, the source's real log included.

`RawEventFileLoader` reads a growing file incrementally (it keeps its offset), but a truncated tail and a
failed checksum are both swallowed without a word (a debug log line), and after a corrupt record it never
reads again. eval.runs.event_files reports both, distinctly, with the byte offset.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tbparse import SummaryReader
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from torch.utils.tensorboard import SummaryWriter

from eval.runs.event_cache import EventCache
from eval.runs.tfevents.framing import scan_records

TAG = "train/loss_total"


def write_events(folder: Path, steps: range) -> Path:
    with SummaryWriter(str(folder)) as w:
        for s in steps:
            w.add_scalar(TAG, float(s), s)
    (path,) = folder.glob("events.out.tfevents.*")
    return path


def record_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return starts


def test_tensorboard_loader_reads_incrementally(tmp_path: Path) -> None:
    """The part it does well: new records appended later are yielded by the next Load()."""
    path = write_events(tmp_path / "a", range(3))
    whole = path.read_bytes()
    cut = record_starts(whole)[2]  # file version, step 0 | step 1, step 2 still to come
    path.write_bytes(whole[:cut])
    loader = RawEventFileLoader(str(path))
    first = len(list(loader.Load()))
    with path.open("ab") as f:
        f.write(whole[cut:])
    assert first == 2 and len(list(loader.Load())) == len(record_starts(whole)) - 2


def test_tensorboard_loader_is_silent_on_truncated_and_corrupt_records(tmp_path: Path) -> None:
    path = write_events(tmp_path / "b", range(6))
    whole = path.read_bytes()
    starts = record_starts(whole)
    n = len(starts)

    truncated = tmp_path / "b" / "events.out.tfevents.truncated"
    truncated.write_bytes(whole[:-7])
    tb_truncated = len(list(RawEventFileLoader(str(truncated)).Load()))

    corrupt = bytearray(whole)
    corrupt[starts[3] + 14] ^= 0xFF  # one payload byte of the 4th record: its data CRC fails
    damaged = tmp_path / "b" / "events.out.tfevents.corrupt"
    damaged.write_bytes(bytes(corrupt))
    loader = RawEventFileLoader(str(damaged))
    tb_corrupt = len(list(loader.Load()))
    tb_again = len(list(loader.Load()))

    # tensorboard: fewer records, no exception, no signal of which problem, and nothing after the corrupt one.
    assert tb_truncated == n - 1 and tb_corrupt == 3 and tb_again == 0
    # ours: the same whole prefix, and the reason.
    assert scan_records(truncated.read_bytes()) == (starts[-1], "incomplete")
    assert scan_records(bytes(corrupt)) == (starts[3], "corrupt")
    cache = EventCache()
    assert "incomplete last record" in cache.read(truncated).warning
    assert f"corrupt record at byte {starts[3]}" in cache.read(damaged).warning


# The fast reader against tbparse (the oracle), value for value.

REPO = Path(__file__).resolve().parents[3]


def source_log() -> Path | None:
    """The seed source's real 350-epoch TensorBoard log: shipped in assets/reference, or the original in
    `../shared/reference/featherface_eca_cbam`; None when neither is here."""
    for folder in (REPO / "assets" / "reference" / "runs" / "featherface_eca_cbam",
                   REPO.parent / "shared" / "reference" / "featherface_eca_cbam",
                   Path("/work/shared/reference/featherface_eca_cbam")):
        found = sorted(folder.glob("events.out.tfevents.*"))
        if found:
            return found[0]
    return None


def tbparse_scalars(path: Path) -> pd.DataFrame:
    frame = SummaryReader(str(path), extra_columns={"wall_time"}).scalars
    return frame.sort_values(["tag", "step", "wall_time"], kind="stable").reset_index(drop=True)


def our_scalars(path: Path, cache: EventCache | None = None) -> pd.DataFrame:
    frame = (cache or EventCache()).read(path).scalars
    frame = frame.assign(tag=frame["tag"].astype(str))
    return frame.sort_values(["tag", "step", "wall_time"], kind="stable").reset_index(drop=True)


def assert_same(ours: pd.DataFrame, oracle: pd.DataFrame) -> None:
    assert len(ours) == len(oracle) and len(ours) > 0
    assert ours["tag"].tolist() == oracle["tag"].tolist()
    assert np.array_equal(ours["step"].to_numpy(), oracle["step"].to_numpy())
    assert np.array_equal(ours["value"].to_numpy(), oracle["value"].to_numpy(dtype=np.float64), equal_nan=True)
    assert np.array_equal(ours["wall_time"].to_numpy(), oracle["wall_time"].to_numpy())


def test_source_log_equals_tbparse() -> None:
    path = source_log()
    if path is None:
        pytest.skip("the source's TensorBoard log is neither shipped nor in ../shared/reference")
    ours = our_scalars(path)
    assert_same(ours, tbparse_scalars(path))
    assert len(ours) == 16_450 and set(ours["tag"]) == {"Loss/Total", "Loss/Localization", "Loss/Classification",
                                                        "Loss/Landmarks", "Learning_Rate", "Epoch/Loss",
                                                        "Epoch/Learning_Rate"}
    assert ours.query("tag == 'Epoch/Loss'")["step"].tolist() == list(range(1, 351))


@pytest.mark.parametrize("run", sorted(p.name for p in (REPO / "assets" / "demo" / "runs").glob("*_s*")))
def test_shipped_trainer_logs_equal_tbparse(run: str) -> None:
    """The demo runs' event files, as train.trainer writes them."""
    for path in sorted((REPO / "assets" / "demo" / "runs" / run).glob("events.out.tfevents.*")):
        assert_same(our_scalars(path), tbparse_scalars(path))


def test_odd_values_steps_tags_and_other_summaries_equal_tbparse(tmp_path: Path) -> None:
    """Varints of every width (negative steps take 10 bytes), NaN/inf/denormal values, unicode and long tags,
    and records the scalar decoder must skip (text and histogram tensors, a >1 KB image) in one file."""
    rng = np.random.default_rng(0)
    steps = [0, 1, 127, 128, 16_383, 16_384, 2**31, 2**40, -1, -(2**33)]
    values = [0.0, -1.5, float("nan"), float("inf"), float("-inf"), 1e-45, 3.4e38, 1 / 3]
    tags = ["a", "a/b", "λ/損失", "t" * 300, "train_step/loss_total"]
    with SummaryWriter(str(tmp_path)) as w:
        for i, step in enumerate(steps):
            for j, tag in enumerate(tags):
                w.add_scalar(tag, values[(i + j) % len(values)], step)
            w.add_text("notes", f"text at {step}", step)
            w.add_histogram("weights", rng.standard_normal(100), step)
        w.add_image("img", rng.random((3, 64, 64)), 7)
        w.add_scalar("new_style", 2.5, 9, new_style=True)
    (path,) = tmp_path.glob("events.out.tfevents.*")
    ours = our_scalars(path)
    plain = ours[ours["tag"] != "new_style"].reset_index(drop=True)
    assert_same(plain, tbparse_scalars(path))
    # TF2-style (tensor) scalars, which tbparse lists as tensors, are read as scalars too
    tensors = SummaryReader(str(path), extra_columns={"wall_time"}).tensors
    new = ours[ours["tag"] == "new_style"]
    assert new["value"].tolist() == tensors.query("tag == 'new_style'")["value"].tolist() == [2.5]


def write_records(path: Path, payloads: list[bytes]) -> list[int]:
    """A TFRecord file of these payloads, checksums as TensorBoard writes them; returns record offsets."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    starts, pos = [], 0
    with path.open("wb") as f:
        writer = RecordWriter(f)
        for p in payloads:
            starts.append(pos)
            writer.write(p)
            pos += 16 + len(p)
    return starts


def test_hand_made_events_equal_tbparse_and_a_bad_one_is_named(tmp_path: Path) -> None:
    """Fields in any order, a field given twice (the last wins), several values in one summary; a record with
    valid checksums but no Event inside is skipped and named with its byte offset."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    def value(tag: str, x: float) -> summary_pb2.Summary.Value:
        return summary_pb2.Summary.Value(tag=tag, simple_value=x)

    head = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString()
    two = event_pb2.Event(wall_time=2.0, step=5, summary=summary_pb2.Summary(
        value=[value("x", 1.0), value("y", 2.0)])).SerializeToString()
    summary = event_pb2.Event(summary=summary_pb2.Summary(value=[value("x", 3.0)])).SerializeToString()
    reordered = summary + event_pb2.Event(step=6).SerializeToString() + event_pb2.Event(
        wall_time=3.0).SerializeToString()
    twice = event_pb2.Event(wall_time=4.0, step=1).SerializeToString() + event_pb2.Event(
        step=7, summary=summary_pb2.Summary(value=[value("y", 4.0)])).SerializeToString()
    good = tmp_path / "good" / "events.out.tfevents.1.host"
    good.parent.mkdir()
    write_records(good, [head, two, reordered, twice])
    ours = our_scalars(good)
    assert_same(ours, tbparse_scalars(good))
    assert ours[["tag", "step", "value"]].values.tolist() == [["x", 5, 1.0], ["x", 6, 3.0], ["y", 5, 2.0],
                                                              ["y", 7, 4.0]]

    bad = tmp_path / "bad" / "events.out.tfevents.1.host"
    bad.parent.mkdir()
    starts = write_records(bad, [head, two, b"\x0f\xff\xff", reordered, twice])
    read = EventCache().read(bad)
    assert f"1 record(s) with valid checksums but not a readable Event (at byte {starts[2]})" in read.warning
    assert_same(our_scalars(bad), tbparse_scalars(good))  # every other record still read


def test_disk_cache_survives_a_restart_and_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = write_events(tmp_path / "run", range(50))
    whole = path.read_bytes()
    cut = record_starts(whole)[30]
    path.write_bytes(whole[:cut])
    disk = tmp_path / "cache"
    first = EventCache(disk).read(path)
    assert first.parses == 1 and len(list(disk.glob("*.npz"))) == 1

    again = EventCache(disk).read(path)  # a new process: nothing decoded, same values
    assert again.parses == 0 and again.scalars.equals(first.scalars)
    with path.open("ab") as f:
        f.write(whole[cut:])
    grown = EventCache(disk).read(path)  # only the appended records are decoded
    assert grown.parses == 1 and grown.scalars["step"].tolist() == list(range(50))
    assert_same(our_scalars(path, EventCache(disk)), tbparse_scalars(path))

    (entry,) = disk.glob("*.npz")
    entry.write_bytes(b"damaged")
    assert EventCache(disk).read(path).scalars["step"].tolist() == list(range(50))  # decoded again, silently
    other = write_events(tmp_path / "other", range(5))  # the file replaced by another run's: read afresh
    path.write_bytes(other.read_bytes())
    assert EventCache(disk).read(path).scalars["step"].tolist() == list(range(5))


def test_fused_reading_finds_every_damage_the_plain_checksums_find(tmp_path: Path) -> None:
    """read_records checks add_scalar-style records by their group's checksum plus what their own bytes
    change (eval.runs.tfevents.decode.template_registers): any flipped byte, wherever in the record (wall time,
    step, value, tag, structure, length, stored CRC), must still be caught at the same record."""
    from eval.runs.event_files import read_records
    from eval.runs.tfevents.decode import decode_records
    from eval.runs.tfevents.framing import frame_records

    with SummaryWriter(str(tmp_path)) as w:
        for step in range(0, 3000, 7):
            for tag in ("train_step/loss_total", "train_step/lr", "a/b"):
                w.add_scalar(tag, step / 7.0, step)
    (path,) = tmp_path.glob("events.out.tfevents.*")
    whole = path.read_bytes()
    starts = record_starts(whole)
    rng = np.random.default_rng(0)
    record = starts[len(starts) // 2]
    length = struct.unpack_from("<Q", whole, record)[0]
    offsets = [record + o for o in range(16 + length)] + list(rng.integers(0, len(whole), 40))
    for offset in offsets:
        damaged = bytearray(whole)
        damaged[offset] ^= 1 << int(rng.integers(0, 8))
        damaged = bytes(damaged)
        plain = frame_records(damaged)
        fused, decoded = read_records(damaged)
        assert (fused.whole, fused.reason) == (plain.whole, plain.reason), offset
        assert plain.reason == "corrupt" or offset >= len(whole) - 4 and plain.reason is None
        expected = decode_records(damaged, plain.starts, plain.lengths).scalars.frame()
        assert decoded.scalars.frame().equals(expected), offset


def test_tags_that_differ_only_in_invalid_utf8_keep_their_checksums_apart(tmp_path: Path) -> None:
    """Two tag byte strings that decode to one text (U+FFFD) are two checksum groups: no false damage."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    def record(tag: bytes, step: int) -> bytes:
        value = summary_pb2.Summary.Value(simple_value=1.0)
        raw = value.SerializeToString()
        value_bytes = b"\x0a" + bytes([len(tag)]) + tag + raw  # tag set by hand: protobuf refuses invalid UTF-8
        summary = b"\x0a" + bytes([len(value_bytes)]) + value_bytes
        return event_pb2.Event(wall_time=1.0, step=step).SerializeToString() + b"\x2a" + bytes([len(summary)]) + summary

    path = tmp_path / "events.out.tfevents.1.host"
    write_records(path, [record(b"x\xff", 1), record(b"x\xfe", 2), record(b"x\xff", 3)])
    read = EventCache().read(path)
    assert read.warning is None and read.scalars["step"].tolist() == [1, 2, 3]
    assert read.scalars["tag"].astype(str).tolist() == ["x\ufffd"] * 3
