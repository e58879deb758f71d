"""FeatherFace Lab dashboard, the router: `streamlit run dashboard/app.py [-- --results-dir DIR --runs-dir DIR]`.

Streamlit puts only `dashboard/` on sys.path; the repository root is added here, once, for every page.
The pages live in `dashboard/views/` (not Streamlit's legacy `pages/` folder), so none runs without this
script: navigation, page config and the sidebar (weights pickers, data folders) are set up here, then
the chosen page runs and only arranges widgets.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

from dashboard.common import render_sidebar  # noqa: E402

VIEWS_DIR = Path(__file__).resolve().parent / "views"
# (file in views/, title, Material icon); the first is the home page.
PAGES: tuple[tuple[str, str, str], ...] = (
    ("overview", "Overview", ":material/home:"),
    ("models", "Models", ":material/memory:"),
    ("heatmaps", "Heatmaps", ":material/local_fire_department:"),
    ("convergence", "Convergence", ":material/show_chart:"),
    ("results", "Results", ":material/table_chart:"),
    ("latency", "Latency", ":material/timer:"),
    ("conclusion", "Conclusion", ":material/summarize:"),
)

st.set_page_config(page_title="FeatherFace Lab", page_icon="🪶", layout="wide")
page = st.navigation([st.Page(VIEWS_DIR / f"{name}.py", title=title, icon=icon, default=i == 0)
                      for i, (name, title, icon) in enumerate(PAGES)])
render_sidebar()
page.run()
