"""Latency page: the compared models timed interleaved (eval.latency.timing.measure_session), medians and
paired differences with 95% bootstrap CIs (eval.verdicts.latency_ci), per-run box plot, and an atomic
append of the summary rows and every timed run beside the earlier ones."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

import eval.latency.lock as timing_lock
from core.config import ABLATION, BASELINE_MODEL, MODEL_CONFIGS
from core.device import select_device
from core.lab.artifacts import LATENCY_CSV, LATENCY_RUNS_CSV, ResultsFileError
from dashboard.common import current_selection, get_model, get_roots, load_models, rel_paths
from dashboard.logic.results_figures import latency_box_figure, latency_display
from dashboard.logic.weights import random_option
from eval.deploy.onnx_export import OnnxExportError
from eval.deploy.onnx_runtime import BACKENDS
from eval.latency.lock import TimingBusy, load_caption, load_warning, timing_slot
from eval.latency.timing import DEFAULT_ROUNDS, DEFAULT_WARMUP, for_backend, measure_session, save_session
from eval.verdicts.latency_ci import paired_difference, precision_note, ratios_to
from eval.verdicts.results_files import load_latency, load_latency_runs
from eval.verdicts.tables import display_name, latest_latency

BACKEND_NAMES = {"torch": "PyTorch (fused deformable SSH)", "onnxruntime": "ONNX Runtime (CPU, native DeformConv)",
                 "openvino": "OpenVINO (CPU)"}
RESULT_KEY = "lat_result"
SAVE_MSG_KEY = "lat_save_message"
NAMES = {m: display_name(m) for m in MODEL_CONFIGS}


def _save(target: Path, result: dict) -> None:
    """Button callback (runs before the rerun, so the button is already disabled once saved)."""
    try:
        save_session(target, result["rows"], result["runs"])
    except (ResultsFileError, OSError) as exc:
        st.session_state[SAVE_MSG_KEY] = ("error", f"Not saved: {rel_paths(exc)}")
    else:
        result["saved"] = True
        st.session_state[SAVE_MSG_KEY] = ("success", f"Appended {len(result['rows'])} rows to `{rel_paths(target)}` "
                                                     f"and {len(result['runs'])} timed runs to `{LATENCY_RUNS_CSV}`.")


def _pair_picker(runs: pd.DataFrame, key: str) -> None:
    """Two models of one session and their paired difference with its CI."""
    models = list(dict.fromkeys(runs["model"]))
    if len(models) < 2:
        return
    c1, c2 = st.columns(2)
    a = c1.selectbox("Model A", models, format_func=display_name, key=f"{key}_a")
    b = c2.selectbox("Model B", models, index=len(models) - 1, format_func=display_name, key=f"{key}_b")
    st.markdown(f"**A − B:** {paired_difference(runs, a, b).sentence(NAMES)}.")


def _baseline_ratios(runs: pd.DataFrame) -> None:
    """Each model's latency as a multiple of the RetinaFace baseline's, paired per round (same backend)."""
    ratios = ratios_to(runs, BASELINE_MODEL)
    if ratios:
        st.markdown(f"**× {display_name(BASELINE_MODEL)}** (paired per round, same backend and threads): "
                    + "; ".join(f"{display_name(m)} {r.text()}" for m, r in ratios.items()) + ".")


selection = current_selection()
st.title("Latency")
roots = get_roots()
st.caption("Times `model(x)` on a random batch (network only: no decoding, no NMS) with the BN-folded inference "
           "copy of the weights chosen in the sidebar; weights do not change the work done. The models run "
           "interleaved, one run of each per round in a rotating order, so that load on the machine hits all alike; "
           "differences are paired per round and come with 95% bootstrap CIs. A difference whose CI includes 0 is "
           "reported as indistinguishable.")

devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])
c1, c2, c3, c4, c5, c6, c7 = st.columns(7)
device = c1.selectbox("Device", devices, key="lat_device")
height = c2.number_input("Input height", 32, 2048, 640, 32, key="lat_h")
width = c3.number_input("Input width", 32, 2048, 640, 32, key="lat_w")
batch = c4.number_input("Batch", 1, 64, 1, key="lat_batch")
rounds = c5.number_input("Rounds", 1, 2000, DEFAULT_ROUNDS, key="lat_rounds",
                         help="Timed rounds; each runs every model once. More rounds, narrower CIs.")
warmup = c6.number_input("Warm-up rounds", 0, 200, DEFAULT_WARMUP, key="lat_warmup")
threads = c7.number_input("CPU threads", 1, 256, torch.get_num_threads(), key="lat_threads",
                          help="Fixed for the whole measurement and recorded with it.")
backend = st.radio("Backend", BACKENDS, format_func=BACKEND_NAMES.get, horizontal=True, key="lat_backend",
                   help="ONNX Runtime runs an ONNX export of the same BN-folded weights (made in memory before "
                        "timing), on the CPU, with the thread count above. Checks of equal outputs: "
                        "`.venv/bin/python -m eval.export`.")
with_none = st.checkbox("Also time the no-attention ablation (gives each model's attention overhead)",
                        value=True, key="lat_none")
with_baseline = st.checkbox(f"Also time the {display_name(BASELINE_MODEL)} baseline", value=True, key="lat_baseline",
                            help="Random init: weights do not change the work done.")
st.caption(f"The defaults ({DEFAULT_ROUNDS} rounds) resolve about 1 ms at 640×640 on 2 CPU threads of a quiet "
           "machine; a loaded machine widens the CIs (±20-30 ms at a load average of 9 on 2 cores). The result "
           "below states the precision actually reached.")

if st.button("Start benchmark", type="primary", key="lat_start"):
    # Copies: measurement moves models to the device, the cached ones are shared with other pages.
    models = {name: copy.deepcopy(m) for name, m in load_models(selection).items()}
    for extra, wanted in ((ABLATION, with_none), (BASELINE_MODEL, with_baseline)):
        if wanted and extra not in models:
            models[extra] = copy.deepcopy(get_model(extra, random_option(extra)))
    total = int(warmup) + int(rounds)
    bar = st.progress(0.0, text="Starting…")
    queue = st.empty()
    try:
        # One timing at a time on this machine (other sessions, other dashboards, the CLI): queue visibly.
        with timing_slot(max_wait_s=timing_lock.DASHBOARD_MAX_WAIT_S, on_wait=lambda waited, who: queue.info(
                f"⏳ Waiting for another timing run to finish ({who}; {waited:.0f} s so far). Timings run one at "
                "a time on this machine so that they do not measure each other.")) as slot:
            queue.empty()
            if backend != "torch":
                bar.progress(0.0, text="Exporting the models to ONNX…")
            forwards = for_backend(models, backend, int(threads), (int(height), int(width)), int(batch))
            rows, runs = measure_session(
                forwards, (int(height), int(width)), int(batch), int(rounds), int(warmup), select_device(device),
                int(threads), backend=backend,
                progress_callback=lambda done, _: bar.progress(done / total, text=f"round {done}/{total}"))
    except TimingBusy as exc:
        queue.empty()
        st.error(str(exc))
    except (RuntimeError, ValueError, OnnxExportError) as exc:
        st.error(f"Benchmark failed on {device}: {rel_paths(exc)}")
    else:
        st.session_state[RESULT_KEY] = {"rows": rows, "runs": runs, "saved": False, "waited_s": slot.waited_s}
    bar.empty()

result = st.session_state.get(RESULT_KEY)
if result and result["rows"]:
    st.subheader("This benchmark")
    frame = pd.DataFrame(result["rows"])
    cols = st.columns(len(frame))
    for col, row in zip(cols, result["rows"], strict=True):
        over = row["overhead_vs_none_ms"]
        delta = (f"{over:+.2f} ms vs none ({row['overhead_verdict']})" if row["model"] != ABLATION and over == over
                 else f"{row['median_ms']:.2f} ms median")
        col.metric(display_name(row["model"]), f"{row['median_ms']:.2f} ms", delta, delta_color="off",
                   delta_arrow="off", border=True)
    st.info(precision_note(result["rows"]))
    if warning := load_warning(result["rows"]):
        st.warning(warning)
    st.caption(load_caption(result["rows"], result.get("waited_s", 0.0)))
    st.dataframe(latency_display(frame).style.format(precision=2), hide_index=True, width="stretch")
    st.markdown("**Compare any two models** (paired per round):")
    _pair_picker(result["runs"], "lat_pair")
    _baseline_ratios(result["runs"])
    times = {m: g["ms"].tolist() for m, g in result["runs"].groupby("model", sort=False)}
    st.plotly_chart(latency_box_figure(times), width="stretch", key="lat_box")
    st.caption("Box plot: each timed run (warm-up excluded), the timings the table's statistics summarise.")
    target = roots.results / LATENCY_CSV
    in_demo = roots.results.resolve().is_relative_to(roots.demo.resolve())
    if in_demo:
        st.caption(f"Saving is off: the results folder is the shipped demo (`{rel_paths(roots.results)}`). Start the "
                   "dashboard with `-- --results-dir results` (or FEATHERFACE_RESULTS_DIR) to keep measurements.")
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
    st.error(f"Earlier measurements unreadable: {rel_paths(msg)}")
for msg in earlier.notes:
    if not earlier.missing:
        st.warning(rel_paths(msg))
if earlier.missing:
    st.info(f"No `{LATENCY_CSV}` in `{rel_paths(roots.results)}` yet.")
elif not earlier.errors:
    shown = latency_display(earlier.frame).assign(date=earlier.frame["date"]).iloc[::-1]
    st.dataframe(shown, hide_index=True, width="stretch")
    latest = latest_latency(earlier.frame)
    st.caption("Latest session: " + precision_note(latest) + " " + load_caption(latest.to_dict("records")))
    if warning := load_warning(latest.to_dict("records")):
        st.warning(f"Latest session: {warning}")
    saved_runs = load_latency_runs(roots.results)
    for msg in saved_runs.errors:
        st.error(f"Saved per-run timings unreadable: {rel_paths(msg)}")
    if not saved_runs.frame.empty:
        sessions = list(dict.fromkeys(saved_runs.frame["session"]))[::-1]
        dates = dict(zip(earlier.frame["session"].astype(str), earlier.frame["date"].astype(str), strict=False))
        session = st.selectbox("Saved session", sessions, format_func=lambda s: f"{dates.get(s, '?')} · {s}",
                               key="lat_session")
        _pair_picker(saved_runs.frame[saved_runs.frame["session"] == session], "lat_saved_pair")
        _baseline_ratios(saved_runs.frame[saved_runs.frame["session"] == session])
