"""Convergence page: training curves of every run under the runs roots. Logic lives in eval.runs.convergence."""

from __future__ import annotations

import streamlit as st

from dashboard.common import get_roots, rel_paths
from eval.runs.convergence import (
    MEAN_OF_SEEDS_ABOVE,
    ConvergenceData,
    available_metrics,
    default_curves,
    fingerprint,
    is_real,
    load_convergence,
    mean_of_seeds_default,
    select_runs,
)
from eval.runs.curves import (
    curve_figure,
    default_direction,
    stability_by_model,
    stability_figure,
    stability_table,
    threshold_default,
)
from eval.runs.event_cache import default_cache


@st.cache_resource(show_spinner="Reading TensorBoard event files…", max_entries=4)
def _load(stamp: tuple, roots: tuple[str, ...]) -> ConvergenceData:
    """Re-read (incrementally) only when a run.json or event file changed size or mtime."""
    return load_convergence(roots, default_cache())


st.title("Convergence")
roots = get_roots()
st.caption("Curves from the TensorBoard event files of every run (a folder with run.json) under: "
           + ", ".join(f"`{rel_paths(p)}`" for p in roots.runs) + ". Runs still training are re-read as they grow.")

st.button("Reload runs", help="Pick up new epochs now (any interaction also re-checks the files)")
stamp = fingerprint(roots.runs)
data = _load(stamp, tuple(map(str, roots.runs)))

if data.warnings:
    st.warning(f"{len(data.warnings)} warning(s) while reading runs; the readable part is shown.")
    with st.expander("Warnings"):
        for msg in data.warnings:
            st.text(rel_paths(msg))
if data.runs.empty:
    st.info("No training runs found. Train one with `.venv/bin/python -m train --network cbam --run-name cbam_s0`; "
            "it writes run.json and TensorBoard events under `runs/<run>/`.")
    st.stop()

st.subheader("Runs")
real = data.runs[data.runs["dataset"].map(is_real)]
if not real.empty:
    st.caption("**Real training logs first**: " + "; ".join(
        f"`{r.run}`: {r.origin}" for r in real.itertuples()) + ". Synthetic runs follow, labelled as such: "
        "their faces are generated, their numbers are never WIDER FACE numbers.")
st.dataframe(data.runs.drop(columns=["root", "path", "display_name"]), hide_index=True, width="stretch")
datasets = list(dict.fromkeys(data.runs["dataset"]))
if len(datasets) > 1:
    st.caption("⚠️ Runs use different datasets (" + ", ".join(datasets) + "): curves of different datasets are "
               "drawn with different dashes and never averaged together.")

c1, c2 = st.columns(2)
all_models = list(dict.fromkeys(data.runs["model"]))
models = c1.multiselect("Models", all_models, default=all_models, key="conv_models")
chosen_ds = c2.multiselect("Datasets", datasets, default=datasets, key="conv_datasets")
view = select_runs(data, models, chosen_ds)
metrics = available_metrics(view)
if not metrics:
    st.info("The selected runs have no scalars yet.")
    st.stop()

c1, c2, c3, c4 = st.columns([3, 2, 1.3, 1.3])
labels = c1.multiselect("Curves", list(metrics), default=default_curves(metrics), key="conv_metrics",
                        help="Tags this page does not know are listed as \"Other: <tag>\" and shown by default")
smoothing = c2.slider("Smoothing (EMA, as TensorBoard)", 0.0, 0.99, 0.6, 0.01, key="conv_smoothing")
log_y = c3.toggle("Log scale", value=False, key="conv_log")
aggregate = c4.toggle("Mean of seeds", value=mean_of_seeds_default(data), key="conv_aggregate",
                      help=f"One line per model and dataset with a band over its runs (seeds); on by default "
                           f"beyond {MEAN_OF_SEEDS_ABOVE} runs, where single runs are no longer told apart")
band = "minmax"
if aggregate:
    band = st.radio("Band", ["minmax", "std"], horizontal=True, key="conv_band",
                    format_func=lambda b: "min–max" if b == "minmax" else "±1 std")
else:
    st.caption("Legend: one group per model and dataset (click its title to hide or show all its seeds), "
               "one entry per seed; hover a line for its run and origin.")

cols = st.columns(2)
for i, label in enumerate(labels):
    fig = curve_figure(view, metrics[label], smoothing=smoothing, log_y=log_y, aggregate=aggregate, band=band,
                       title=label)
    cols[i % 2].plotly_chart(fig, width="stretch", key=f"conv_fig_{label}")
st.caption("Long curves are drawn from at most 2,000 points each: per bucket of consecutive steps the "
           "minimum and maximum are kept, so spikes stay visible; smoothing and statistics use every point.")

st.subheader("Stability")
c1, c2, c3 = st.columns(3)
stab_label = c1.selectbox("Metric", list(metrics), key="conv_stab_metric")
stab_tag = metrics[stab_label]
direction = default_direction(stab_tag)
threshold = c2.number_input(f"Threshold (first epoch {'≥' if direction == 'above' else '≤'})",
                            value=float(threshold_default(view, stab_tag)), format="%.4f",
                            key=f"conv_threshold_{stab_tag}")
last_n = c3.slider("Last N epochs", 1, 20, 5, key="conv_last_n")
table = stability_table(view, stab_tag, threshold, last_n=last_n, smoothing=smoothing, direction=direction)
st.caption(f"`reached_at`: first epoch whose smoothed value is {'≥' if direction == 'above' else '≤'} the "
           f"threshold (empty: never). Mean and variance over the last {last_n} epochs (smoothed, weight "
           f"{smoothing:.2f}); a small variance means training has settled.")
st.dataframe(table, hide_index=True, width="stretch")
if not table.empty:
    st.plotly_chart(stability_figure(table), width="stretch", key="conv_stability_fig")
    st.dataframe(stability_by_model(table), hide_index=True, width="stretch")
    st.caption("Per model and dataset: runs that reached the threshold, their mean first epoch, and the mean of "
               "the per-run last-N statistics.")
