"""One timing at a time on the machine (eval.latency.lock): two processes, two threads, the CLI and the Latency
page queue on one flock; it is released on exceptions and when its holder dies; every session records the load
average at its start, and a high one is flagged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

import eval.latency.lock as timing_lock
from dashboard.logic.results_figures import latency_display
from eval.latency.lock import (
    HIGH_LOAD_PER_CPU,
    TimingBusy,
    default_lock_path,
    is_high_load,
    load_caption,
    load_warning,
    timing_slot,
)
from eval.latency.timing import main as latency_main
from eval.latency.timing import measure_session, save_session
from eval.verdicts.results_files import load_latency

REPO = Path(__file__).resolve().parents[3]

# A child process: wait for a common start time, take the slot, hold it `hold` s, report when.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from eval.latency.lock import timing_slot
start_at, lock, hold = float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
while time.time() < start_at:
    time.sleep(0.002)
asked = time.time()
with timing_slot(lock) as slot:
    print(json.dumps({"asked": asked, "start": time.time()}), flush=True)
    time.sleep(hold)
    end = time.time()
print(json.dumps({"end": end, "waited": slot.waited_s}), flush=True)
"""


def child(lock: Path, start_at: float, hold: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(REPO), str(start_at), str(lock), str(hold)],
                            stdout=subprocess.PIPE, text=True)


@contextmanager
def held_elsewhere(path: Path | None = None) -> Iterator[threading.Event]:
    """The lock held by another thread (its own open file, as another session's) until the event is set."""
    release, taken = threading.Event(), threading.Event()

    def hold() -> None:
        with timing_slot(path):
            taken.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(30)
    try:
        yield release
    finally:
        release.set()
        thread.join(30)


def free_now(path: Path | None = None) -> bool:
    """Whether another thread can take the lock at once."""
    got: list[bool] = []

    def probe() -> None:
        try:
            with timing_slot(path, max_wait_s=0):
                got.append(True)
        except TimingBusy:
            got.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(30)
    return got == [True]


def test_two_processes_started_together_take_turns(tmp_path: Path) -> None:
    lock = tmp_path / "timing.lock"
    start_at = time.time() + 4.0  # both interpreters are up by then, even on a loaded machine
    procs = [child(lock, start_at, 1.0) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    runs = sorted(({**json.loads(a), **json.loads(b)} for a, b in (o.strip().splitlines() for o in outs)),
                  key=lambda r: r["start"])
    first, second = runs
    assert abs(first["asked"] - second["asked"]) < 0.5, "the two did not ask at the same moment"
    assert first["end"] <= second["start"], f"timed at the same moment: {runs}"
    assert second["waited"] > 0.5  # it queued behind the first


def test_threads_timing_together_never_overlap() -> None:
    """Two sessions of one dashboard process (threads) calling the timing function itself."""
    calls: dict[str, list[float]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def session(name: str) -> None:
        def forward(x: object) -> None:
            calls[name].append(time.perf_counter())
            time.sleep(0.003)
            calls[name].append(time.perf_counter())

        try:
            barrier.wait(30)
            measure_session({name: forward}, (8, 8), 1, rounds=25, warmup=1, device="cpu", threads=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    (s1, e1), (s2, e2) = sorted((min(c), max(c)) for c in calls.values())
    assert len(calls["a"]) == len(calls["b"]) == 2 * 26
    assert e1 <= s2, "the two sessions' forward passes interleaved"


def test_lock_released_when_the_timing_raises() -> None:
    def broken(x: object) -> None:
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        measure_session({"m": broken}, (8, 8), 1, rounds=2, warmup=0, device="cpu")
    assert free_now()
    with pytest.raises(ZeroDivisionError), timing_slot():
        assert not free_now()  # held inside the block
        raise ZeroDivisionError
    assert free_now()


def test_lock_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    lock = tmp_path / "timing.lock"
    proc = child(lock, 0.0, 600.0)
    try:
        assert json.loads(proc.stdout.readline())["start"] > 0  # it holds the slot now
        assert not free_now(lock)
        with pytest.raises(TimingBusy, match=rf"pid {proc.pid} on .* since"), timing_slot(lock, max_wait_s=0.3):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    with timing_slot(lock, max_wait_s=10) as slot:  # the kernel dropped the dead holder's lock
        assert slot.waited_s < 10


def test_a_second_session_queues_visibly_then_is_refused() -> None:
    waits: list[tuple[float, str]] = []
    refused = pytest.raises(TimingBusy, match=rf"Not timed: another timing run \(pid {os.getpid()} on .* since "
                                              r"\d\d:\d\d:\d\d\) was still running after 1 s")
    with held_elsewhere(), refused, timing_slot(max_wait_s=0.8, on_wait=lambda s, who: waits.append((s, who)),
                                                poll_s=0.1):
        pytest.fail("ran while another held the lock")
    assert len(waits) >= 3 and [s for s, _ in waits] == sorted(s for s, _ in waits)
    assert all(f"pid {os.getpid()}" in who for _, who in waits)


def test_nested_slots_in_one_thread_share_the_outer_one() -> None:
    with timing_slot() as outer:
        with timing_slot(max_wait_s=0) as inner:  # would wait on itself if not re-entrant
            assert inner is outer
        assert not free_now()  # the inner block did not release the outer slot
    assert free_now()


def test_default_lock_path_is_machine_wide_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timing_lock.LOCK_ENV)
    assert default_lock_path().name == "featherface-timing.lock"
    monkeypatch.setenv(timing_lock.LOCK_ENV, "/some/where.lock")
    assert default_lock_path() == Path("/some/where.lock")


def test_each_session_records_the_load_at_its_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 2.5, 1.25))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    rows, runs = measure_session({"m": lambda x: None}, (8, 8), 1, rounds=3, warmup=0, device="cpu")
    assert {(r["load_avg_1m"], r["cpu_count"]) for r in rows} == {(3.0, 4)}
    warning = load_warning(rows)
    assert warning is not None and "load average 3.00 on 4 CPUs" in warning
    assert "high" in load_caption(rows) and "3.00 on 4 CPUs" in load_caption(rows)
    csv = tmp_path / "latency_benchmark.csv"
    save_session(csv, rows, runs)
    loaded = load_latency(tmp_path)
    assert not loaded.errors and loaded.frame["load_avg_1m"].tolist() == [3.0]
    assert latency_display(loaded.frame)[["load_avg_1m", "cpu_count"]].values.tolist() == [[3.0, 4]]


def test_what_counts_as_high_load() -> None:
    assert HIGH_LOAD_PER_CPU == 0.5
    assert not is_high_load(1.0, 2) and is_high_load(1.01, 2) and is_high_load(9.0, 2)
    assert not is_high_load(float("nan"), 2) and not is_high_load(None, None) and not is_high_load(3.0, 0)
    assert load_warning([{"load_avg_1m": 1.0, "cpu_count": 2}]) is None
    assert load_warning([{"load_avg_1m": None, "cpu_count": None}]) is None  # sessions saved before the columns
    assert load_caption([{"load_avg_1m": float("nan"), "cpu_count": float("nan")}]) == \
        "Load at the start: not recorded."
    assert load_caption([{"load_avg_1m": 0.4, "cpu_count": 2}], waited_s=12.4).endswith(
        "(not high: the limit is 0.5 per CPU, 1). Queued 12 s behind another timing run first.")


def test_cli_waits_for_a_running_timing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "latency_benchmark.csv"
    with held_elsewhere() as release:
        threading.Timer(1.0, release.set).start()
        code = latency_main(["--models", "none", "--size", "32", "32", "--rounds", "1", "--warmup", "0",
                             "--device", "cpu", "--threads", "1", "--out", str(csv)])
    out = capsys.readouterr().out
    assert code == 0 and out.count("waiting for another timing run (pid") == 1
    assert "load average" in out and pd.read_csv(csv)["load_avg_1m"].notna().all()


# The Latency page

APP = REPO / "dashboard" / "app.py"


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_latency_page_refuses_then_queues_behind_another_timing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    (tmp_path / "results").mkdir()
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(timing_lock, "DASHBOARD_MAX_WAIT_S", 1.0)
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.switch_page("views/latency.py").run()
    for key, value in (("lat_rounds", 2), ("lat_warmup", 0), ("lat_threads", 1), ("lat_h", 32), ("lat_w", 32)):
        at.number_input(key=key).set_value(value)
    at.checkbox(key="lat_none").uncheck()
    at.checkbox(key="lat_baseline").uncheck()
    with held_elsewhere():
        at.button(key="lat_start").click().run()
    assert not at.exception
    assert f"Not timed: another timing run (pid {os.getpid()}" in texts(at.error)
    assert len(at.metric) == 0  # nothing was timed

    monkeypatch.setattr(timing_lock, "DASHBOARD_MAX_WAIT_S", 120.0)
    with held_elsewhere() as release:
        threading.Timer(1.5, release.set).start()
        at.button(key="lat_start").click().run()
    assert not at.exception and not at.error and len(at.metric) == 3
    captions = texts(at.caption)
    assert "Load average at the start:" in captions and "behind another timing run first." in captions
