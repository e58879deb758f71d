"""Overview: what is compared, what data was found (and on which dataset), what is missing and how to make it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import MODEL_CONFIGS
from core.lab.artifacts import dataset_label
from core.lab.roots import display_path
from dashboard.common import get_roots, get_scan, rel_paths, rel_paths_frame
from dashboard.logic.inventory import build_inventory
from eval.runs.event_cache import default_cache
from eval.runs.study_progress import cluster_warnings, failure_lines, progress_display, studies_progress


@st.cache_data(show_spinner=False)
def parameter_totals() -> dict[str, int]:
    """From the app's cache folder while the model code is unchanged (no torch import on a cold start)."""
    from eval.verdicts.parameter_cache import parameter_totals as cached_totals

    return cached_totals(MODEL_CONFIGS)


st.title("FeatherFace Lab")
st.write("Three ways to put channel + spatial attention into FeatherFace, a ~0.5M-parameter RetinaFace-style "
         "face detector, compared on parameters, FLOPs, attention maps, training curves, accuracy and latency.")
roots = get_roots()
inv = build_inventory(roots, scan=get_scan(roots))

st.subheader("What is compared")
st.dataframe(pd.DataFrame([{"model": name, "design": MODEL_CONFIGS[name].description, "parameters": f"{n:,}"}
                           for name, n in parameter_totals().items()]), hide_index=True)
st.caption("Parameter counts are those of `model.get_parameter_count()` (see the Models page for the breakdown "
           "and FLOPs). `none` is the ablation used to measure what attention costs.")

st.subheader("What was found")
if inv.manifest is not None:
    ds = inv.demo_dataset
    st.info(f"**Shipped demo artefacts** (`{display_path(roots.demo, roots)}`): dataset **{dataset_label(ds)}**. "
            "Demo numbers and curves come from this dataset only; they are not WIDERFace results.")
else:
    st.warning("No shipped demo artefacts in this checkout (`assets/demo/manifest.json` not found): the "
               "pages use whatever you trained or evaluated, and random-init models otherwise.")

cols = st.columns(3)
cols[0].metric("training runs", len(inv.runs))
cols[1].metric("results CSVs", len(inv.results))
cols[2].metric("trained weights", sum(o.trained for opts in inv.weights.values() for o in opts))

if inv.runs:
    st.markdown("**Training runs**")
    st.dataframe(pd.DataFrame(inv.runs).drop(columns=["shipped"]), hide_index=True)
for warning in inv.run_warnings:
    st.warning(rel_paths(warning))

if inv.results:
    st.markdown(f"**Results** in `{rel_paths(roots.results)}`")
    st.dataframe(pd.DataFrame([{"file": r["file"], "rows": r["rows"],
                                "datasets": ", ".join(dataset_label(d) for d in r["datasets"]) or "—",
                                "status": rel_paths(r["error"]) if r["error"] else "ok"} for r in inv.results]),
                 hide_index=True)
    if inv.eval_files:
        st.caption(f"{inv.eval_files} detailed evaluation file(s) in `eval/` (PR curves, per-attribute AP).")
else:
    st.caption(f"No results CSV in `{rel_paths(roots.results)}`.")

st.subheader("Studies")
studies, study_warnings = studies_progress(roots.runs, default_cache())  # event files read incrementally
if studies:
    st.button("Refresh progress", key="study_refresh",
              help="read study.json and the event files again, and ask SLURM (squeue) where its jobs stand")
for study in studies:
    counts, total = study.counts, len(study.table)
    m = study.manifest
    st.markdown(f"**{m.name}** (`{display_path(study.study_dir, roots)}`): {', '.join(m.models)} × seeds "
                f"{', '.join(map(str, m.seeds))}, executor {m.executor}")
    cols = st.columns(4)
    for col, state in zip(cols, ("done", "running", "failed", "pending"), strict=True):
        col.metric(state, counts[state])
    st.progress(counts["done"] / total if total else 0.0, text=f"{counts['done']} of {total} runs done")
    st.dataframe(rel_paths_frame(progress_display(study)), hide_index=True)
    for line in failure_lines(study):  # the same lines as python -m train.study --status
        st.error(rel_paths(line))
    for line in cluster_warnings(study):
        st.warning(rel_paths(line))
if not studies:
    st.caption("No study (`study.json`) under the runs folders; start one with `.venv/bin/python -m train.study "
               "--models ... --seeds 0 1 2 --data ROOT --out runs/`.")
for warning in study_warnings:
    st.warning(rel_paths(warning))

st.markdown("**Weights available per model**, those that learned real faces (WIDER FACE) first (pick them in the "
            "sidebar; each Heatmaps column takes any of them)")
st.dataframe(pd.DataFrame([{"model": m, "options": " · ".join(o.label for o in opts)}
                           for m, opts in inv.weights.items()]), hide_index=True)
if inv.skipped_files:
    with st.expander(f"{len(inv.skipped_files)} results file(s) skipped"):
        for msg in inv.skipped_files:
            st.caption(rel_paths(msg))
if inv.skipped_checkpoints:
    with st.expander(f"{len(inv.skipped_checkpoints)} checkpoint file(s) could not be read"):
        for msg in inv.skipped_checkpoints:
            st.caption(rel_paths(msg))

st.subheader("What is missing")
if not inv.missing:
    st.success("Everything the dashboard can show was found.")
for item in inv.missing:
    st.markdown(f"- {item.what}")
    if item.command:
        st.code(item.command, language="bash")

st.caption("Folders in use: results `" + rel_paths(roots.results) + "`, runs " +
           ", ".join(f"`{rel_paths(p)}`" for p in roots.runs) + ". Choose others with "
           "`streamlit run dashboard/app.py -- --results-dir DIR --runs-dir DIR`.")
