"""One latency timing at a time on this machine, and the load it started under.

Two timings running together measure each other: each one's forward passes queue behind the other's.
So every timing (the dashboard's Latency page, `python -m eval.latency`, `eval.results`) runs inside
`timing_slot`, an exclusive `fcntl.flock` on one lock file in the temp folder. flock locks belong to an
open file, so two threads of one dashboard process, two dashboard processes and a CLI run all queue on
it; the kernel releases it when its holder exits or crashes, so a killed run never leaves it stuck.

The slot also records the 1-minute load average (`os.getloadavg`) at its start. A timing that starts
with more than `HIGH_LOAD_PER_CPU` runnable tasks per CPU shares the cores with other work, and its
result says so (`load_warning`).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

LOCK_ENV = "FEATHERFACE_TIMING_LOCK"
LOCK_NAME = "featherface-timing.lock"
HIGH_LOAD_PER_CPU = 0.5
"""Load above this many runnable tasks per CPU counts as high: on average at least every other core is
already busy, so a timing that uses several threads gets time slices shared with other work."""
DEFAULT_MAX_WAIT_S = 1800.0
"""How long a CLI timing queues behind another before giving up (the dashboard passes its own limit)."""
DASHBOARD_MAX_WAIT_S = 600.0
"""How long a dashboard session queues before its run is refused with a message (it can retry)."""
POLL_S = 0.25

WaitCallback = Callable[[float, str], None]
"""Called as `on_wait(seconds waited so far, who holds the lock)` while queued, about every POLL_S."""

_LOCAL = threading.local()  # the slots this thread holds, by lock path: a nested call re-uses its slot


class TimingBusy(RuntimeError):
    """Another timing run held the lock for longer than the caller was willing to wait."""


@dataclass(frozen=True)
class MachineLoad:
    """The load averages (1, 5, 15 min) and the CPU count they are compared with."""

    load_1m: float
    load_5m: float
    load_15m: float
    cpus: int

    @property
    def high(self) -> bool:
        return is_high_load(self.load_1m, self.cpus)


@dataclass(frozen=True)
class TimingSlot:
    """A held turn: when it started, how long it queued first, and the load at its start."""

    started: float  # time.time()
    waited_s: float
    load: MachineLoad


def default_lock_path() -> Path:
    """FEATHERFACE_TIMING_LOCK if set, else one file in the system temp folder (shared by every process)."""
    return Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / LOCK_NAME)


def machine_load() -> MachineLoad:
    """The machine's load now; os.cpu_count() because the load average counts tasks machine-wide."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # not available on this platform
        one = five = fifteen = math.nan
    return MachineLoad(one, five, fifteen, os.cpu_count() or 1)


def is_high_load(load_1m: float, cpus: float) -> bool:
    """True when the 1-minute load exceeds HIGH_LOAD_PER_CPU per CPU (unknown values are not high)."""
    try:
        load_1m, cpus = float(load_1m), float(cpus)
    except (TypeError, ValueError):
        return False
    if math.isnan(load_1m) or math.isnan(cpus) or cpus <= 0:
        return False
    return load_1m > HIGH_LOAD_PER_CPU * cpus


def load_warning(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """A sentence for a session whose load at start was high (its rows carry load_avg_1m and cpu_count),
    None when it was not or was not recorded."""
    for row in rows:
        load, cpus = row.get("load_avg_1m"), row.get("cpu_count")
        if is_high_load(load, cpus):
            return (f"The machine was busy when this timing started: load average {float(load):.2f} on "
                    f"{int(float(cpus))} CPUs (above {HIGH_LOAD_PER_CPU:g} per CPU). Other work shared the cores, "
                    "so the times are slower and noisier than on a quiet machine; compare models within this "
                    "session (paired rounds), not with sessions timed under another load. The 1-minute average "
                    "also still counts a timing run that ended just before this one.")
    return None


def load_caption(rows: Sequence[Mapping[str, Any]], waited_s: float = 0.0) -> str:
    """The load a session started under (and how long it queued), in one line."""
    row = rows[0] if rows else {}
    load, cpus = row.get("load_avg_1m"), row.get("cpu_count")
    try:
        load, cpus = float(load), int(float(cpus))
    except (TypeError, ValueError):
        load = math.nan
    if math.isnan(load):
        text = "Load at the start: not recorded."
    else:
        text = (f"Load average at the start: {load:.2f} on {cpus} CPUs "
                f"({'high' if is_high_load(load, cpus) else 'not high'}: the limit is {HIGH_LOAD_PER_CPU:g} per CPU, "
                f"{HIGH_LOAD_PER_CPU * cpus:g}).")
    if waited_s >= 1.0:
        text += f" Queued {waited_s:.0f} s behind another timing run first."
    return text


def say_once(write: Callable[[str], None]) -> WaitCallback:
    """An `on_wait` for a command line: says once (not at every poll) that the run queues, and behind whom."""
    told: list[str] = []

    def on_wait(waited: float, who: str) -> None:
        if not told:
            told.append(who)
            write(f"waiting for another timing run ({who}); timings run one at a time on this machine")

    return on_wait


def holder(path: Path | str) -> str:
    """Who holds the lock, as its holder wrote it ("pid 123 on host since 14:02:11"), for queue messages."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        since = datetime.fromtimestamp(float(info["started"])).strftime("%H:%M:%S")
        return f"pid {int(info['pid'])} on {info.get('host', '?')} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _open(path: Path) -> tuple[int, bool]:
    """The lock file opened for flock; writable when permitted (then the holder's details are written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:  # created by another user: read access is enough to flock
        return os.open(path, os.O_RDONLY), False


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def timing_slot(path: Path | str | None = None, *, max_wait_s: float = DEFAULT_MAX_WAIT_S,
                on_wait: WaitCallback | None = None, poll_s: float = POLL_S) -> Iterator[TimingSlot]:
    """Hold the machine-wide timing lock for the block; queue up to `max_wait_s` behind another holder
    (calling `on_wait` while queued), then raise TimingBusy naming the holder.

    Re-entrant within a thread (a timing function called inside a held slot gets that slot). The lock is
    released when the block ends, raises, or the process dies.
    """
    path = Path(path) if path is not None else default_lock_path()
    key = str(path.resolve())
    held: dict[str, TimingSlot] = _LOCAL.__dict__.setdefault("held", {})
    if key in held:
        yield held[key]
        return
    fd, writable = _open(path)
    try:
        queued = time.monotonic()
        while not _try_lock(fd):
            waited = time.monotonic() - queued
            if waited >= max_wait_s:
                raise TimingBusy(f"Not timed: another timing run ({holder(path)}) was still running after "
                                 f"{waited:.0f} s of waiting; timings run one at a time on this machine so that "
                                 "they do not measure each other. Try again when it has finished.")
            if on_wait is not None:
                on_wait(waited, holder(path))
            time.sleep(min(poll_s, max(0.0, max_wait_s - waited)))
        slot = TimingSlot(started=time.time(), waited_s=time.monotonic() - queued, load=machine_load())
        if writable:
            note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": slot.started})
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        held[key] = slot
        try:
            yield slot
        finally:
            del held[key]
            if writable:
                os.ftruncate(fd, 0)  # still held: no later holder's note is erased
    finally:
        os.close(fd)  # closing the only descriptor of this open file releases the flock
