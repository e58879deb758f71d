"""Models: parameters and FLOPs per part, and how each variant wires its channel and spatial gates."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core.config import COMPARED_MODELS, MODEL_CONFIGS, MODEL_ORDER
from core.flops import DCN_MODULATION_FLOPS, DCN_SAMPLING_FLOPS
from dashboard.common import display_name
from dashboard.logic.model_summary import design, flops_table, parameter_table, part_pivot, summary_table


@st.cache_data(show_spinner="Counting parameters and FLOPs…")
def tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Weights-independent, so computed once per process."""
    return summary_table(), parameter_table(), flops_table()


st.title("Models")
summary, params, flops = tables()

st.subheader("Size and cost at 640×640")
st.dataframe(summary, hide_index=True, column_config={
    "params": st.column_config.NumberColumn("params", format="localized"),
    "attention_params": st.column_config.NumberColumn("attention params", format="localized"),
    "GFLOPs": st.column_config.NumberColumn("GFLOPs", format="%.3f"),
    "attention_MFLOPs": st.column_config.NumberColumn("attention MFLOPs", format="%.3f"),
    "published_params": st.column_config.NumberColumn("published params", format="localized"),
    "published_mAP": st.column_config.NumberColumn("published mAP (WIDERFace val)", format="%.2f"),
})
st.caption("Parameters and FLOPs do not depend on the weights picked in the sidebar.")

tab_params, tab_flops = st.tabs(["Parameters per part", "FLOPs per part"])
with tab_params:
    wide = part_pivot(params, "params")
    st.dataframe(wide, column_config={m: st.column_config.NumberColumn(m, format="localized") for m in wide})
    fig = px.bar(params, x="model", y="params", color="part", text_auto=False,
                 labels={"params": "parameters", "model": ""}, category_orders={"model": list(MODEL_ORDER)})
    fig.update_layout(height=380, legend_title_text="")
    st.plotly_chart(fig)
    attn = params[params["part"].str.startswith("attention")]
    fig = px.bar(attn, x="model", y="params", color="part", barmode="group", log_y=False,
                 labels={"params": "attention parameters", "model": ""}, category_orders={"model": list(MODEL_ORDER)})
    fig.update_layout(height=300, legend_title_text="")
    st.plotly_chart(fig)
with tab_flops:
    flops = flops.assign(MFLOPs=flops["flops"] / 1e6)
    wide = part_pivot(flops, "MFLOPs")
    st.dataframe(wide, column_config={m: st.column_config.NumberColumn(m, format="%.2f") for m in wide})
    fig = px.bar(flops, x="model", y="MFLOPs", color="part", category_orders={"model": list(MODEL_ORDER)},
                 labels={"model": ""})
    fig.update_layout(height=380, legend_title_text="")
    st.plotly_chart(fig)
    st.caption(
        "FLOPs = 2 × multiply-accumulates of convolutions and matmuls, counted by "
        "`torch.utils.flop_counter.FlopCounterMode` (`core/flops.py`). The counter does not see the deformable "
        "convolutions (`torchvision::deform_conv2d` / `grid_sample`), so their cost is added analytically: "
        f"2·C_in·9·C_out·H·W for the weighted sum plus {DCN_SAMPLING_FLOPS + DCN_MODULATION_FLOPS}·C_in·9·H·W for "
        "bilinear sampling and modulation. Element-wise work (sigmoids, the attention products X·M, pooling) is "
        "not counted, so ECA-CBAM sequential and parallel have the same FLOPs; sequential does one extra "
        "element-wise C×H×W product per block (X·M_c before the spatial gate)."
    )

st.subheader("Attention designs")
st.write("Each variant places the same kind of block at six taps: after backbone stages 1–3 and after the BiFPN "
         "outputs P3–P5. They differ only in how the channel mask M_c and spatial mask M_s are computed and combined.")
for name in COMPARED_MODELS:
    with st.container(border=True):
        st.markdown(f"**{display_name(name)}** (`{name}`): {MODEL_CONFIGS[name].description}")
        left, right = st.columns([1, 1])
        with left:
            st.graphviz_chart(design(name).dot)
        with right:
            for formula in design(name).formulas:
                st.latex(formula)
            st.caption(r"$\bar X_c$, $\hat X_c$: mean and max over channels (1×H×W); M_c is C×1×1, M_s is 1×H×W, "
                       "their product (the hybrid mask) is C×H×W.")
st.markdown(
    "**Sequential vs parallel.** Both ECA-CBAM variants have the same 610 attention parameters. Sequentially, "
    "the spatial gate looks at the channel-refined map F = X·M_c, so what is *where* depends on what channels "
    "were kept. In parallel, both gates see the raw X and their masks are multiplied into one hybrid mask, so "
    "the spatial gate cannot be steered by the channel gate (and the two can be computed concurrently). The "
    "Heatmaps page shows the masks each variant actually applied, and their difference."
)
