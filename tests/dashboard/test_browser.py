"""End to end: the real `streamlit run dashboard/app.py` server, every page in headless Debian chromium.

Needs the system packages `chromium` and `chromium-driver` (apt); skipped with that reason otherwise.
Screenshots go to tests/artifacts/screenshots/<page>.png (git-ignored). The helpers are reused by
benchmarks/bench_dashboard.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
# (name, url path, title in the sidebar navigation as app.py declares it)
PAGES: tuple[tuple[str, str, str], ...] = (
    ("overview", "", "Overview"),
    ("models", "models", "Models"),
    ("heatmaps", "heatmaps", "Heatmaps"),
    ("convergence", "convergence", "Convergence"),
    ("results", "results", "Results"),
    ("latency", "latency", "Latency"),
    ("conclusion", "conclusion", "Conclusion"),
)
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1400,1600")
# JavaScript probe of the page state: rendered once the script run ended (stApp's data-test-script-state, set by
# Streamlit for its own e2e tests) and no element is stale.
_STATE_JS = """
const q = (s) => Array.from(document.querySelectorAll(s));
const app = document.querySelector('[data-testid="stApp"]');
const script = app ? app.getAttribute('data-test-script-state') : 'initial';
return {
  h1: q('h1').map(e => e.innerText.trim()).filter(t => t),
  script: script,
  running: script !== 'notRunning' || q('[data-testid="stSkeleton"]').length > 0,
  stale: q('[data-stale="true"]').length,
  exceptions: q('[data-testid="stException"]').map(e => e.innerText.slice(0, 300)),
  errors: q('[data-testid="stAlertContentError"]').map(e => e.innerText.slice(0, 300)),
  url: location.pathname,
};
"""


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} not found: install Debian's `{package}` (apt-get install chromium chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_bin() -> str:
    local = Path(sys.executable).parent / "streamlit"
    return str(local if local.exists() else REPO / ".venv" / "bin" / "streamlit")


@contextmanager
def streamlit_server(env: dict[str, str], log: Path, timeout: float = 60.0) -> Iterator[tuple[str, float]]:
    """Start the dashboard on a free port; yields (base URL, start time) once /_stcore/health answers."""
    port = free_port()
    cmd = [streamlit_bin(), "run", "dashboard/app.py", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer within {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url, started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextmanager
def chromium() -> Iterator:
    """Headless Debian chromium through the system chromedriver, with a throw-away profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ff_chromium_")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_rendered(driver, title: str | None = None, timeout: float = 90.0, settle: float = 0.3,
                  h1s: list[str] | None = None) -> dict:
    """Poll until the page shows an h1 (containing `title`; exactly the texts `h1s` if given), the script
    run has ended and nothing is stale, for `settle` s in a row. Returns the final state with `ready_at`,
    the perf_counter time it first looked rendered (so `settle` is not part of a measured time).
    Raises TimeoutError."""
    deadline = time.perf_counter() + timeout
    ready_since = None
    state: dict = {}
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        state = driver.execute_script(_STATE_JS)
        titled = (title is None or any(title.lower() in h.lower() for h in state["h1"])) and (
            h1s is None or state["h1"] == h1s)
        done = bool(state["h1"]) and titled and not state["running"] and not state["stale"]
        if state["exceptions"]:
            return state | {"ready_at": now}
        if done:
            ready_since = ready_since or now
            if now - ready_since >= settle:
                return state | {"ready_at": ready_since}
        else:
            ready_since = None
        time.sleep(0.02)
    raise TimeoutError(f"page not rendered within {timeout} s: {state}")


def make_fixture_roots(base: Path) -> dict[str, str]:
    """Small results + runs folders (2 datasets, 2 seeds) and the env vars that point the app at them."""
    from tests.eval.runs.test_convergence import write_run
    from tests.eval.verdicts.test_tables import make_results_root

    results = make_results_root(base / "results")
    runs = base / "runs"
    for seed in (0, 1):
        for model in ("cbam", "eca_cbam", "eca_cbam_parallel"):
            write_run(runs, f"{model}_s{seed}", model, seed, 8)
    return {"FEATHERFACE_RESULTS_DIR": str(results), "FEATHERFACE_RUNS_DIR": str(runs)}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_every_page_renders_in_chromium(tmp_path: Path):
    env = make_fixture_roots(tmp_path)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    timings: list[str] = []
    with streamlit_server(env, tmp_path / "streamlit.log") as (url, _), chromium() as driver:
        # A deep link as the very first request of the server must still get app.py's navigation.
        driver.get(f"{url}/results")
        state = wait_rendered(driver, title="Results")
        nav = driver.execute_script("return document.querySelectorAll('[data-testid=\"stSidebarNavLink\"]').length")
        assert nav == len(PAGES) and not state["exceptions"], (nav, state)
        for name, path, title in PAGES:
            t0 = time.perf_counter()
            driver.get(f"{url}/{path}")
            try:
                state = wait_rendered(driver, title=None if name == "overview" else title)
                timings.append(f"{name} {time.perf_counter() - t0:.2f}s")
            except TimeoutError as exc:
                driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
                failures.append(f"{name}: {exc}")
                continue
            driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
            if state["exceptions"]:
                failures.append(f"{name}: exception on the page: {state['exceptions']}")
            elif state["errors"]:
                failures.append(f"{name}: st.error on fixture data: {state['errors']}")
    print("page load times:", ", ".join(timings))
    assert not failures, "\n".join(failures)
    assert all((SCREENSHOTS / f"{name}.png").stat().st_size > 10_000 for name, _, _ in PAGES)
