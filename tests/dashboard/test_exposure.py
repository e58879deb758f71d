"""Exposure (issue 24): the README's command serves on loopback only; no widget value, crafted or not, makes
the app read a file outside the folders it was started with; and no page shows an absolute path."""

from __future__ import annotations

import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.checkpoint import save_checkpoint
from core.factory import build_model
from core.lab.roots import SourceError, relative_text, resolve_roots
from dashboard.logic.weights import WeightsOption, load_inference_model
from tests.eval.runs.test_convergence import write_run
from tests.eval.verdicts.test_tables import make_results_root
from tests.test_readme import _readme_commands

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
PAGES = ("overview", "models", "heatmaps", "convergence", "results", "latency", "conclusion")

# Which files the process opens (Python's audit hook sees open(), os.open() and io.open())

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every file opened in the block, symlinks resolved (a hook cannot be removed: it records only here)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def inside(paths: list[str], folder: Path) -> list[str]:
    real = os.path.realpath(folder)
    return [p for p in paths if p == real or p.startswith(real + os.sep)]


# The README's command listens on loopback only


def listening(port: int, proc_net: Path = Path("/proc/net")) -> list[tuple[str, int]]:
    """(address, socket inode) of every TCP socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        table = proc_net / name
        if not table.is_file():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host byte order
            if sys.byteorder == "little":
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(fields[9])))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_listening_reads_proc_net_addresses(tmp_path: Path) -> None:
    """The parser the next test relies on tells a loopback bind from a wildcard one (lines as Linux prints them)."""
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(
        head + "   0: 0100007F:2161 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101\n"
        "   1: 00000000:2161 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102\n"
        "   2: 0100007F:2161 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 103\n"
        "   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 104\n")
    (tmp_path / "tcp6").write_text(
        head + "   0: 00000000000000000000000001000000:2161 00000000000000000000000000000000:0000 0A 00000000:00000000 "
        "00:00000000 00000000     0        0 105\n"
        "   1: 00000000000000000000000000000000:2161 00000000000000000000000000000000:0000 0A 00000000:00000000 "
        "00:00000000 00000000     0        0 106\n")
    if sys.byteorder != "little":
        pytest.skip("the sample lines are those of a little-endian machine")
    assert sorted(listening(0x2161, tmp_path)) == [("0.0.0.0", 102), ("127.0.0.1", 101), ("::", 106), ("::1", 105)]


@pytest.mark.slow
def test_readme_command_listens_on_loopback_only(tmp_path: Path) -> None:
    """`.venv/bin/streamlit run dashboard/app.py` as the README writes it, on a free port, with the shipped
    config: every socket it listens on is 127.0.0.1 or ::1, and it prints no Network URL."""
    command = next(part for part in _readme_commands()[0].split("&&") if "streamlit run" in part)
    argv = shlex.split(command)
    if not (REPO / argv[0]).exists():  # a checkout whose venv lives elsewhere: the same streamlit, found beside python
        argv[0] = str(Path(sys.executable).parent / "streamlit")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}  # would override the config
    log = tmp_path / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*argv, "--server.port", str(port)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no answer within 120 s: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        own = socket_inodes(proc.pid)
        sockets = [address for address, inode in listening(port) if inode in own]
        assert sockets, "the server's listening socket was not found in /proc/net/tcp or tcp6"
        assert all(ipaddress.ip_address(a).is_loopback for a in sockets), f"listens on {sockets}"
        assert "Network URL" not in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


# Nothing a visitor types reaches a file outside the folders


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Folders outside the repository: results and runs (one real checkpoint), and beside them a `secret`
    folder the app must never read, reachable through a symlink planted in runs/ and results/."""
    secret = tmp_path / "secret"
    secret.mkdir()
    save_checkpoint(secret / "cbam.pth", build_model("cbam"))
    (secret / "passwd.csv").write_text("user,hash\nroot,x\n")
    results = make_results_root(tmp_path / "results")
    table = pd.read_csv(results / "comparison_table.csv")  # a results file naming files by absolute path
    table["weights"] = [str(tmp_path / "runs" / "cbam_s0" / "weights" / "Final.pth")] * len(table)
    table.to_csv(results / "comparison_table.csv", index=False)
    (results / "eval" / "leak.json").symlink_to(secret / "passwd.csv")
    runs = tmp_path / "runs"
    write_run(runs, "cbam_s0", "cbam", 0, 3)
    save_checkpoint(runs / "cbam_s0" / "weights" / "Final.pth", build_model("cbam"), dataset="synthetic")
    (runs / "borrowed.pth").symlink_to(secret / "cbam.pth")
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(results))
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(runs))
    return tmp_path


def test_a_weights_choice_outside_the_folders_is_refused_unread(world: Path) -> None:
    roots = resolve_roots([], os.environ, REPO)
    secret = world / "secret"
    crafted = [secret / "cbam.pth", world / "runs" / "borrowed.pth", world / "runs" / ".." / "secret" / "cbam.pth",
               Path("../../../../../../etc/passwd"), Path("/etc/passwd"), Path("/proc/self/environ")]
    with opened_files() as opened:
        for path in crafted:
            with pytest.raises(SourceError, match="does not resolve to a file inside the allowed folders"):
                load_inference_model(WeightsOption("cbam", "checkpoint", "crafted", path=path), roots)
        assert not inside(opened, secret) and "/etc/passwd" not in opened
        load_inference_model(WeightsOption("cbam", "checkpoint", "mine",
                                           path=world / "runs" / "cbam_s0" / "weights" / "Final.pth"), roots)
    # The hook does see reads: the checkpoint inside the runs folder was opened, nothing in secret/ was.
    assert inside(opened, world / "runs") and not inside(opened, secret) and "/etc/passwd" not in opened


def run_app(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def send(at: AppTest, values: dict[str, str]) -> AppTest:
    """One rerun with these raw widget values, as a hand-written websocket message would carry them (the browser
    sends a selectbox's label; a crafted client can send any string)."""
    states = at._tree.get_widget_states()
    ids = {key: at.selectbox(key=key).id for key in values if key != "ff_weights_cbam"}
    ids |= {"ff_weights_cbam": at.sidebar.selectbox(key="ff_weights_cbam").id} if "ff_weights_cbam" in values else {}
    for widget in states.widgets:
        for key, wid in ids.items():
            if widget.id == wid:
                widget.string_value = values[key]
    return at._run(states)


def test_crafted_widget_values_cannot_reach_a_file_outside(world: Path) -> None:
    secret = world / "secret"
    at = run_app("heatmaps")
    picker = at.sidebar.selectbox(key="ff_weights_cbam")
    offered, default = list(picker.options), picker.value
    assert not any("borrowed" in o or "secret" in o for o in offered)  # the escaping symlink is not offered
    assert any("cbam.pth" in c.value and "skipped, a symlink to" in c.value for c in at.sidebar.caption)
    crafted = ["../../secret/cbam.pth", str(secret / "cbam.pth"), f"checkpoint:{world / 'runs' / 'borrowed.pth'}",
               f"checkpoint:{secret / 'cbam.pth'}", "/etc/passwd"]
    with opened_files() as opened:
        for value in crafted:
            send(at, {"ff_weights_cbam": value, "hm_sample": "../../../../etc/passwd"})
            assert not at.exception, [e.value for e in at.exception]
            assert at.sidebar.selectbox(key="ff_weights_cbam").value == default  # the value is not an option
            assert at.selectbox(key="hm_sample").value in at.selectbox(key="hm_sample").options
        # A choice kept from an earlier run that now names a file outside: a warning, the first choice instead.
        at.session_state["_ff_weights_choice_cbam"] = f"checkpoint:{secret / 'cbam.pth'}"
        at.run()
        assert not at.exception
        assert any("the weights chosen before are gone" in w.value for w in at.sidebar.warning)
        assert at.sidebar.selectbox(key="ff_weights_cbam").value == default
    assert not inside(opened, secret) and "/etc/passwd" not in opened, inside(opened, secret)
    assert not at.error, [e.value for e in at.error]


# Every file name a page shows is relative to its folder


def page_text(at: AppTest) -> str:
    """Everything the browser would get for this run (text, tables, options, labels), as text."""
    parts = []

    def walk(node: object) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        if type(node).__name__ == "Dataframe":  # the cells travel apart from the element
            parts.append(node.value.to_csv())
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)

    walk(at._tree)
    return "\n".join(parts)


def test_no_page_shows_an_absolute_path(world: Path) -> None:
    texts = {}
    for page in PAGES:
        texts[page] = text = page_text(run_app(page))
        assert str(world) not in text and str(REPO) not in text, (page, [
            line for line in text.splitlines() if str(world) in line or str(REPO) in line][:5])
    # What the pages say instead: names relative to the folder, and only the file name of what lies outside.
    assert "results/eval/leak.json: skipped, a symlink to …/passwd.csv, outside results" in texts["results"]
    assert "runs/borrowed.pth: skipped, a symlink to …/cbam.pth, outside runs" in texts["overview"]
    assert "runs/cbam_s0/weights/Final.pth" in texts["results"]  # the results table's weights column


def test_relative_text_names_files_by_their_folder(tmp_path: Path) -> None:
    roots = resolve_roots(["--results-dir", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs")], {}, REPO)
    cases = {
        f"{tmp_path}/res/eval/a.json: skipped, a symlink to /home/me/secret/b.json, outside {tmp_path}/res.":
            "res/eval/a.json: skipped, a symlink to …/b.json, outside res.",
        f"refusing {tmp_path}/runs2/x.pth: allowed folders ['{tmp_path}/runs', '{REPO}/weights']":
            "refusing …/x.pth: allowed folders ['runs', 'weights']",
        f"{REPO}/assets/demo/runs/cbam_s0/run.json (PosixPath('/etc/shadow'))":
            "assets/demo/runs/cbam_s0/run.json (PosixPath('…/shadow'))",
        "see https://github.com/a/b, a/b, 1/2, 30 it/s and ± 2 / 3": "see https://github.com/a/b, a/b, 1/2, 30 it/s "
                                                                      "and ± 2 / 3",
        f"`{tmp_path}/res` holds {tmp_path}/res.bak/x": "`res` holds …/x",
    }
    for text, expected in cases.items():
        assert relative_text(text, roots) == expected
