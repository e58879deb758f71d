"""FeatherFace Lab dashboard entry point: `streamlit run dashboard/app.py [-- --results-dir DIR --runs-dir DIR]`.

Streamlit puts only `dashboard/` on sys.path; the repository root is added so pages can import
`core`, `eval` and `dashboard.common`.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

PAGES_DIR = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="FeatherFace Lab", page_icon="🪶", layout="wide")

pages = [
    st.Page(PAGES_DIR / "overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(PAGES_DIR / "models.py", title="Models", icon=":material/memory:"),
    st.Page(PAGES_DIR / "heatmaps.py", title="Heatmaps", icon=":material/local_fire_department:"),
    st.Page(PAGES_DIR / "convergence.py", title="Convergence", icon=":material/show_chart:"),
    st.Page(PAGES_DIR / "results.py", title="Results", icon=":material/table_chart:"),
    st.Page(PAGES_DIR / "latency.py", title="Latency", icon=":material/timer:"),
    st.Page(PAGES_DIR / "conclusion.py", title="Conclusion", icon=":material/summarize:"),
]
page = st.navigation(pages)
# A cold-start deep link (/heatmaps before anyone opened /) was handed over here by
# dashboard.common.ensure_app_navigation; go on to the page that was asked for.
intended = st.session_state.pop("_ff_intended_page", None)
target = next((p for p in pages if p.url_path == intended), None)
if target is not None and target is not page and target.url_path != page.url_path:
    st.switch_page(target)
page.run()
