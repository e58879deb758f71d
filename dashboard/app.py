"""FeatherFace Lab dashboard entry point: `streamlit run dashboard/app.py`."""

import streamlit as st

st.set_page_config(page_title="FeatherFace Lab", layout="wide")
st.title("FeatherFace Lab")
st.write("Compare CBAM, ECA-CBAM sequential and ECA-CBAM parallel attention in a 0.5M-parameter face detector.")
