"""What tensorboard's own event-file loader misses, and why eval.event_files keeps its own framing.

`RawEventFileLoader` reads a growing file incrementally (it keeps its offset), but a truncated tail and a
failed checksum are both swallowed without a word (a debug log line), and after a corrupt record it never
reads again. eval.event_files reports both, distinctly, with the byte offset.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from torch.utils.tensorboard import SummaryWriter

from eval.event_files import EventCache, scan_records

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
