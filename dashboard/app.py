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
    st.Page(PAGES_DIR / "overview.py", title="Overview", icon="🏠", default=True),
    st.Page(PAGES_DIR / "models.py", title="Models", icon="🧩"),
    st.Page(PAGES_DIR / "heatmaps.py", title="Heatmaps", icon="🔥"),
    st.Page(PAGES_DIR / "convergence.py", title="Convergence", icon="📉"),
    st.Page(PAGES_DIR / "results.py", title="Results", icon="📊"),
    st.Page(PAGES_DIR / "latency.py", title="Latency", icon="⏱️"),
    st.Page(PAGES_DIR / "conclusion.py", title="Conclusion", icon="✅"),
]
st.navigation(pages).run()
