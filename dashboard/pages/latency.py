"""Latency page: live forward-pass benchmark of the compared models (eval.latency.benchmark_model),
per-run box plot, and an atomic append to latency_benchmark.csv beside the earlier rows."""

from __future__ import annotations

# ruff: noqa: E402 (imports follow the sys.path fix below)
import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # a deep link served before app.py first ran (Streamlit's pages/ folder mode)
    sys.path.insert(0, _REPO)

import copy
from datetime import datetime

import pandas as pd
import streamlit as st
import torch

from core.artifacts import LATENCY_COLUMNS, ResultsFileError, append_rows
from core.device import device_name, select_device
from dashboard.common import get_model, get_roots, load_models, render_sidebar
from eval.compare import (
    LATENCY_CSV,
    add_overhead,
    display_name,
    latency_box_figure,
    latency_display,
    latency_row,
    load_latency,
)
from eval.latency import benchmark_model
from eval.sources import random_option

RESULT_KEY = "lat_result"
SAVE_MSG_KEY = "lat_save_message"


def _save(target: Path, result: dict) -> None:
    """Button callback (runs before the rerun, so the button is already disabled once saved)."""
    try:
        append_rows(target, result["rows"], LATENCY_COLUMNS)
    except (ResultsFileError, OSError) as exc:
        st.session_state[SAVE_MSG_KEY] = ("error", f"Not saved: {exc}")
    else:
        result["saved"] = True
        st.session_state[SAVE_MSG_KEY] = ("success", f"Appended {len(result['rows'])} rows to `{target}`.")


selection = render_sidebar()
st.title("Latency")
roots = get_roots()
st.caption("Times `model(x)` on a random batch (network only: no decoding, no NMS) with the BN-folded inference "
           "copy of the weights chosen in the sidebar; weights do not change the work done.")

devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])
c1, c2, c3, c4, c5, c6 = st.columns(6)
device = c1.selectbox("Device", devices, key="lat_device")
height = c2.number_input("Input height", 32, 2048, 640, 32, key="lat_h")
width = c3.number_input("Input width", 32, 2048, 640, 32, key="lat_w")
batch = c4.number_input("Batch", 1, 64, 1, key="lat_batch")
runs = c5.number_input("Runs", 1, 1000, 50, key="lat_runs")
warmup = c6.number_input("Warm-up", 0, 200, 10, key="lat_warmup")
with_none = st.checkbox("Also time the no-attention ablation (gives each model's attention overhead)",
                        value=False, key="lat_none")

if st.button("Start benchmark", type="primary", key="lat_start"):
    models = load_models(selection)
    if with_none:
        models["none"] = get_model("none", random_option("none"))
    bar = st.progress(0.0, text="Starting…")
    rows, times = [], {}
    date = datetime.now().isoformat(timespec="seconds")
    try:
        dev = select_device(device)
        for i, (name, model) in enumerate(models.items()):
            def show(done: int, total: int, i: int = i, name: str = name) -> None:
                bar.progress(min(1.0, (i + done / total) / len(models)),
                             text=f"{display_name(name)}: run {done}/{total}")

            # A copy: benchmark_model moves the model to the device, the cached one is shared with other pages.
            stats = benchmark_model(copy.deepcopy(model), (int(height), int(width)), int(batch), int(runs),
                                    int(warmup), dev, show)
            rows.append(latency_row(name, stats, str(dev), device_name(dev), (int(height), int(width)),
                                    torch.get_num_threads(), torch.__version__, True, date))
            times[name] = list(stats.times_ms)
    except (RuntimeError, ValueError) as exc:
        st.error(f"Benchmark failed on {device}: {exc}")
    else:
        st.session_state[RESULT_KEY] = {"rows": add_overhead(rows), "times": times, "saved": False}
    bar.empty()

result = st.session_state.get(RESULT_KEY)
if result and result["rows"]:
    st.subheader("This benchmark")
    frame = pd.DataFrame(result["rows"])
    cols = st.columns(len(frame))
    for col, row in zip(cols, result["rows"], strict=True):
        col.metric(display_name(row["model"]), f"{row['fps']:.1f} FPS", f"{row['median_ms']:.2f} ms median",
                   delta_color="off", delta_arrow="off", border=True)
    st.dataframe(latency_display(frame).style.format(precision=2), hide_index=True, width="stretch")
    st.plotly_chart(latency_box_figure(result["times"]), width="stretch", key="lat_box")
    st.caption("Box plot: each timed run (warm-up excluded), the same timings the table's statistics summarise.")
    target = roots.results / LATENCY_CSV
    in_demo = roots.results.resolve().is_relative_to(roots.demo.resolve())
    if in_demo:
        st.caption(f"Saving is off: the results folder is the shipped demo (`{roots.results}`). Start the dashboard "
                   "with `-- --results-dir results` (or FEATHERFACE_RESULTS_DIR) to keep measurements.")
    st.button(f"Append to {LATENCY_CSV}", disabled=in_demo or result["saved"], key="lat_save", on_click=_save,
              args=(target, result))
    kind, message = st.session_state.pop(SAVE_MSG_KEY, (None, None))
    if kind == "error":
        st.error(message)
    elif kind == "success":
        st.success(message)

st.subheader("Earlier measurements")
earlier = load_latency(roots.results)
for msg in earlier.errors:
    st.error(f"Earlier measurements unreadable: {msg}")
if earlier.missing:
    st.info(f"No `{LATENCY_CSV}` in `{roots.results}` yet.")
elif not earlier.errors:
    shown = latency_display(earlier.frame).assign(date=earlier.frame["date"]).iloc[::-1]
    st.dataframe(shown, hide_index=True, width="stretch")
