"""Conclusion page: a Markdown summary generated from the results present (eval.verdicts.conclusion), with the
hypotheses table (eval.verdicts.hypotheses), exportable."""

from __future__ import annotations

import streamlit as st

from dashboard.common import get_roots, rel_paths
from eval.runs.convergence import default_cache, load_convergence
from eval.verdicts.conclusion import build_conclusion, runs_overview
from eval.verdicts.results_files import load_comparison, load_latency

st.title("Conclusion")
roots = get_roots()
st.caption(f"Generated from `{rel_paths(roots.results)}` and the runs under "
           + ", ".join(f"`{rel_paths(p)}`" for p in roots.runs) + "; it changes when the data does.")

for loaded, name in ((load_comparison(roots.results), "Accuracy"), (load_latency(roots.results), "Latency")):
    for msg in loaded.errors:
        st.error(f"{name} file unusable (reported below as missing data): {rel_paths(msg)}")

scalars = load_convergence(roots.runs, default_cache()).scalars  # incremental: cheap after the first read
markdown = rel_paths(build_conclusion(roots.results, runs_overview(roots.runs), scalars=scalars))
st.download_button("Download conclusion (.md)", markdown, file_name="featherface_conclusion.md",
                   mime="text/markdown", key="concl_download")
with st.container(border=True):
    st.markdown(markdown)
