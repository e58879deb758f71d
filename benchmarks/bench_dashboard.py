"""Dashboard responsiveness in a real browser: cold start and page switches.

Run from the repository root (needs Debian's chromium + chromium-driver; writes the report it prints):
    .venv/bin/python -m benchmarks.bench_dashboard --out benchmarks/results/dashboard.txt [--rounds 3]

Cold start: from launching `streamlit run dashboard/app.py` to the first page ("/", Overview) rendered
in headless chromium (script run ended, nothing stale, no loading skeleton). The browser is started
before the server so its own start-up is not counted. Page switch: a click on a sidebar link until the
new page is rendered, in one browser session after a warm-up round that visited every page (so models
and data are cached, as for a user moving around). The data are the small test fixtures (two
datasets, two seeds; tests/test_dashboard_browser.py builds them). Targets: cold start < 5 s, page
switch < 1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from selenium.webdriver.common.by import By

from core.atomic import atomic_write_text
from tests.test_dashboard_browser import (
    _STATE_JS,
    CHROMIUM,
    PAGES,
    browser_missing,
    chromium,
    make_fixture_roots,
    streamlit_server,
    wait_rendered,
)

COLD_TARGET_S = 5.0
SWITCH_TARGET_S = 1.0


def click_nav(driver, path: str) -> float:
    """Click the sidebar link of `path`; returns the perf_counter time of the click."""
    for link in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]'):
        href = (link.get_attribute("href") or "").rstrip("/")
        if href.endswith(f"/{path}") if path else href.count("/") == 2:
            start = time.perf_counter()
            link.click()
            return start
    raise RuntimeError(f"no sidebar link to /{path}")


def first_script_run(driver, timeout: float = 60.0) -> float:
    """perf_counter time at which the browser first shows the script as running (or already done)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        state = driver.execute_script(_STATE_JS)
        if state["script"] not in ("initial", None):
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError("the first script run never started")


def measure(rounds: int) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory(prefix="ff_bench_dash_") as tmp:
        env = make_fixture_roots(Path(tmp))
        with chromium() as driver, streamlit_server(env, Path(tmp) / "streamlit.log") as (url, launched):
            healthy = time.perf_counter()
            driver.get(url)
            run_started = first_script_run(driver)
            first = wait_rendered(driver, timeout=120)
            cold = first["ready_at"] - launched
            lines.append(f"cold start, launch -> server healthy: {healthy - launched:6.2f} s")
            lines.append(f"cold start, launch -> first script run starts (page and frontend loaded): "
                         f"{run_started - launched:6.2f} s")
            lines.append(f"cold start, launch -> first page rendered: {cold:6.2f} s   "
                         f"(target < {COLD_TARGET_S:.0f} s: {'met' if cold < COLD_TARGET_S else 'NOT met'})")

            start = time.perf_counter()
            driver.get(url)  # a second session: server imports and caches warm, browser cache warm
            again = wait_rendered(driver, timeout=120)["ready_at"] - start
            lines.append(f"same page, new session on the warm server:  {again:6.2f} s")

            expected: dict[str, list[str]] = {"": first["h1"]}
            warm: dict[str, float] = {}
            for name, path, title in PAGES[1:] + PAGES[:1]:  # warm-up: visit every page once
                start = click_nav(driver, path)
                state = wait_rendered(driver, title=title if path else None, timeout=120)
                expected[path] = state["h1"]
                warm[name] = state["ready_at"] - start
            lines.append("first visit of each page in the session (loads models/data into the caches):")
            lines += [f"  {name:<12}{t:6.2f} s" for name, t in warm.items()]

            times: dict[str, list[float]] = {name: [] for name, _, _ in PAGES}
            for _ in range(rounds):
                for name, path, _ in PAGES[1:] + PAGES[:1]:
                    start = click_nav(driver, path)
                    state = wait_rendered(driver, h1s=expected[path], timeout=120)
                    times[name].append(state["ready_at"] - start)
        all_times = [t for ts in times.values() for t in ts]
        lines.append(f"page switches with warm caches ({rounds} rounds, median / max per page):")
        for name, ts in times.items():
            lines.append(f"  {name:<12}{statistics.median(ts):6.2f} s / {max(ts):5.2f} s   "
                         f"{'ok' if statistics.median(ts) < SWITCH_TARGET_S else 'OVER 1 s'}")
        worst = max(statistics.median(ts) for ts in times.values())
        lines.append(f"all switches: median {statistics.median(all_times):.2f} s, max {max(all_times):.2f} s; "
                     f"slowest page median {worst:.2f} s (target < {SWITCH_TARGET_S:.0f} s: "
                     f"{'met' if worst < SWITCH_TARGET_S else 'NOT met'})")
    return lines


def measure_event_reading(steps: int = 20_000) -> list[str]:
    """Convergence data path: first read of a long run, then an incremental read after one more epoch."""
    import json

    from torch.utils.tensorboard import SummaryWriter

    from core.artifacts import TB_TAGS
    from eval.convergence import load_convergence
    from eval.event_files import EventCache

    tags = [TB_TAGS[k] for k in ("step_loss", "step_loss_box", "step_loss_cls", "step_loss_landmark", "step_lr")]
    with tempfile.TemporaryDirectory(prefix="ff_bench_tb_") as tmp:
        run = Path(tmp) / "runs" / "long"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"model": "cbam", "dataset": "synthetic", "seed": 0}))
        writer = SummaryWriter(str(run), max_queue=1000)
        for step in range(steps):
            for tag in tags:
                writer.add_scalar(tag, 1.0 / (step + 1), step)
        writer.flush()
        size = sum(p.stat().st_size for p in run.glob("events.*"))
        cache = EventCache()
        start = time.perf_counter()
        load_convergence([run.parent], cache)
        first = time.perf_counter() - start
        for step in range(steps, steps + 400):  # one more epoch of 400 steps
            for tag in tags:
                writer.add_scalar(tag, 1.0 / (step + 1), step)
        writer.flush()
        start = time.perf_counter()
        data = load_convergence([run.parent], cache)
        again = time.perf_counter() - start
        writer.close()
    return [f"event file of {len(tags) * steps:,} scalars ({size / 1e6:.1f} MB): first read {first:.2f} s, "
            f"re-read after 400 more steps {1000 * again:.0f} ms ({len(data.scalars):,} scalars)"]


def environment() -> list[str]:
    version = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True).stdout.strip()
    import streamlit
    import torch

    load = os.getloadavg()
    return [f"date {datetime.now().isoformat(timespec='seconds')}, {platform.platform()}",
            f"python {platform.python_version()}, streamlit {streamlit.__version__}, torch {torch.__version__}, "
            f"{version}",
            f"{os.cpu_count()} CPU cores (shared), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of page switches (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = browser_missing()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    report = "\n".join(["Dashboard: cold start and page switches (headless chromium, real server)",
                        *environment(), "", *measure(args.rounds), "", *measure_event_reading()]) + "\n"
    print(report, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
