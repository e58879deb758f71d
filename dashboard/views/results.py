"""Results page: measured AP beside the published rows and targets, seed spread, deltas, PR curves and
the per-attribute breakdown. Logic lives in eval.compare; every dataset is kept apart."""

from __future__ import annotations

import streamlit as st

from dashboard.common import get_roots
from eval.compare import (
    aggregate_seeds,
    attribute_figure,
    attribute_pivot,
    attribute_table,
    combined_table,
    dataset_label,
    delta_table,
    deltas,
    load_comparison,
    load_eval_records,
    load_reference,
    mean_std_table,
    pr_figure,
    style_combined,
    style_deltas,
    vs_reference,
)

st.title("Results")
roots = get_roots()
st.caption(f"From `{roots.results}`: comparison_table.csv (measured), reference_results.csv (published and "
           "targets) and eval/*.json (PR curves, attributes). AP in percent.")

comp = load_comparison(roots.results)
ref = load_reference(roots.results)
for msg in comp.errors:
    st.error(f"Measured results unusable: {msg}")
for msg in comp.notes:
    (st.info if comp.missing else st.warning)(msg)
for msg in ref.errors:
    st.warning(msg)

st.subheader("AP table")
table = combined_table(comp.frame, ref.frame)
st.dataframe(style_combined(table), hide_index=True, width="stretch", height=min(35 * (len(table) + 1) + 3, 700))
st.caption("*Tinted italic rows*: synthetic data, not WIDERFace. Grey rows: published numbers and targets "
           "(WIDERFace val), never measured here. No row is marked best: see the deltas and their CIs below.")
st.download_button("Download table (CSV)", table.to_csv(index=False), file_name="featherface_results.csv",
                   mime="text/csv", key="res_download")

agg = aggregate_seeds(comp.frame)
if not agg.empty:
    st.subheader("Per model: mean ± std over seeds")
    st.dataframe(mean_std_table(agg), hide_index=True, width="stretch")
    st.subheader("Deltas (within each dataset)")
    st.dataframe(style_deltas(delta_table(deltas(agg))), hide_index=True, width="stretch")
    st.caption("Points of AP, parallel minus the other design, computed only between rows of the same dataset, "
               "with a 95% Welch t interval over seeds. *higher* / *lower*: the CI excludes 0; *indistinguishable*: "
               "it includes 0, so neither design is ranked; *single seed*: one run on a side, spread unknown.")
    versus = vs_reference(agg, ref.frame)
    if not versus.empty:
        st.subheader("WIDERFace val: measured minus published / target")
        st.dataframe(versus.style.format({m: "{:+.2f}" for m in ("easy", "medium", "hard", "mAP")}),
                     hide_index=True, width="stretch")
    elif (agg["dataset"] != "widerface").all():
        st.info("No WIDERFace val rows: synthetic numbers are not compared with the published results or targets.")
    st.download_button("Download mean ± std (CSV)", agg.to_csv(index=False), file_name="featherface_seeds.csv",
                       mime="text/csv", key="res_download_seeds")

st.subheader("Precision-recall curves")
records, warnings = load_eval_records(roots.results)
for msg in warnings:
    st.warning(msg)
if not records:
    st.info(f"No evaluation files under `{roots.results / 'eval'}` (written by `python -m eval.results`).")
else:
    datasets = sorted({r.dataset for r in records}, key=lambda d: (d != "widerface", d))
    dataset = st.radio("Dataset", datasets, horizontal=True, format_func=dataset_label, key="res_dataset")
    chosen = [r for r in records if r.dataset == dataset]
    st.plotly_chart(pr_figure(chosen), width="stretch", key="res_pr")
    st.subheader(f"Per-attribute AP, hard set — {dataset_label(dataset)}")
    attrs = attribute_table(chosen)
    if attrs.empty:
        st.info("These evaluation files hold no attribute breakdown.")
    else:
        st.plotly_chart(attribute_figure(attrs), width="stretch", key="res_attr")
        st.dataframe(attribute_pivot(attrs), hide_index=True, width="stretch")
        st.caption("Counted faces: hard-set faces with that value; other faces are ignored (neither true nor false "
                   "positives). Scale by box height.")
