"""Placeholder: owned by dashboard B."""
import streamlit as st

st.info("This page is not built yet.")
