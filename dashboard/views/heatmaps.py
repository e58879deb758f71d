"""Heatmaps: detections and the channel / spatial / hybrid masks of three columns of weights on one image,
then heatmap quality measured over the val set (eval.attention.measure report: a table and a chart per level).

The columns open on the sidebar's choices, real-face weights first (the source's ECA-CBAM trained on WIDER
FACE); each can show any weights, and each says what its model learned. A column whose weights belong to a
run with several checkpoints gets an epoch slider: the masks as training formed them.

One forward pass per column and image (`FeatherFace.inspect`), cached by image hash + weights; every
slider below only re-draws from that cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.express as px
import streamlit as st

from core.checkpoint import CheckpointError
from core.config import PARALLEL, SEQUENTIAL
from core.io.image_input import ImageInputError
from core.io.image_io import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UPLOAD_EXTENSIONS
from core.lab.artifacts import dataset_label
from core.lab.roots import SourceError
from dashboard.common import (
    WeightsOption,
    all_weights_options,
    current_selection,
    display_name,
    get_model,
    get_roots,
    interactive_torch_threads,
    key_token,
    rel_paths,
    training_steps,
    weights_fingerprint,
)
from dashboard.logic.attention_report import load_report, pair_table, stats_figure, stats_table
from dashboard.logic.heatmaps import (
    FORWARD_CONF,
    LEVEL_CHOICES,
    MAX_DRAWN,
    analysis_image,
    column_choice_label,
    column_choices,
    column_models,
    column_view,
    difference_view,
    epoch_steps,
    has_masks,
    image_digest,
    read_image,
    run_column,
    skipped_models_note,
    sync_column,
    view_image,
)
from dashboard.logic.weights import faces_learned
from eval.attention.figures import heatmap_png
from eval.attention.measure import DEFAULT_OUT, AttentionStatsError
from eval.attention.metrics import ALL_LEVELS, MASK_KINDS
from eval.attention.overlay import COLORMAPS

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"
PAR, SEQ = PARALLEL, SEQUENTIAL  # parallel minus sequential


@st.cache_data(max_entries=16, show_spinner=False)
def decode(data: bytes, name: str) -> np.ndarray:
    return read_image(data, name)


@st.cache_data(max_entries=48, show_spinner=False)
def inspect(model_name: str, fingerprint: str, digest: str, _model, _rgb: np.ndarray, with_masks: bool = True):
    """Detections + masks (None for a variant without attention) of one model on one image; keyed on weights
    fingerprint and image hash."""
    with interactive_torch_threads(1):
        return run_column(_model, _rgb, with_masks)


st.title("Attention heatmaps")
st.caption("Masks and the detections drawn with them always come from the PyTorch forward pass (forward hooks on "
           "the attention blocks), whatever backend the Latency page or `--backend` uses: an ONNX Runtime session "
           "computes the same detections but exposes no masks.")
selection = current_selection()

# Image input
images: list[tuple[str, np.ndarray]] = []
left, right = st.columns([3, 2])
with left:
    uploads = st.file_uploader(
        f"Upload images ({', '.join(UPLOAD_EXTENSIONS)}; up to {MAX_UPLOAD_BYTES // 2**20} MB and "
        f"{MAX_UPLOAD_PIXELS / 1e6:g} MP each)",
        type=list(UPLOAD_EXTENSIONS), accept_multiple_files=True, max_upload_size=MAX_UPLOAD_BYTES // 2**20,
        key="hm_uploads")
    for upload in uploads or []:
        try:
            images.append((upload.name, decode(upload.getvalue(), upload.name)))
        except ImageInputError as exc:
            st.error(f"Skipped upload: {exc}")
samples = sorted(p for p in SAMPLES_DIR.glob("*") if p.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS)
with right:
    sample_name = st.selectbox("…or a bundled sample", [p.name for p in samples], key="hm_sample",
                               disabled=bool(images))
if images:
    if len(images) > 1:
        pick = st.selectbox("Image", [n for n, _ in images], key="hm_pick")
        image_name, rgb_full = next((n, im) for n, im in images if n == pick)
    else:
        image_name, rgb_full = images[0]
elif samples:
    sample = next((p for p in samples if p.name == sample_name), samples[0])  # a listed file, whatever the widget says
    image_name = sample.name
    rgb_full = decode(sample.read_bytes(), image_name)
    if uploads:
        st.info(f"No usable upload: showing the bundled sample {image_name}.")
else:
    st.error("No image: upload one (bundled samples are missing from assets/samples).")
    st.stop()

rgb, analysis_scale = analysis_image(rgb_full)
if analysis_scale < 1.0:
    st.caption(f"{image_name} is {rgb_full.shape[1]}×{rgb_full.shape[0]}; analysed at {rgb.shape[1]}×{rgb.shape[0]}.")

# Controls
c1, c2, c3, c4, c5 = st.columns(5)
level = c1.selectbox("Level", LEVEL_CHOICES, index=0, key="hm_level",
                     help="stage1–3: backbone taps (strides 8/16/32); P3–P5: BiFPN outputs; all: mean of the six")
colormap = c2.selectbox("Colormap", list(COLORMAPS), key="hm_cmap")
alpha = c3.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="hm_alpha")
conf = c4.slider("Detection threshold", FORWARD_CONF, 0.99, 0.5, 0.01, key="hm_conf")
top_k = c5.slider("Strongest channels", 4, 32, 12, 1, key="hm_topk")
normalize = st.checkbox("Stretch each mask to its own min–max range", value=True, key="hm_norm",
                        help="Masks often sit in a narrow band around 0.5; stretching makes their structure visible.")

# The columns: any weights each, stepping through a run's checkpoints
choices = column_choices(all_weights_options())
by_key = {o.key: o for o in choices}
slots = column_models(selection)
st.caption("Each column shows any weights: weights that learned real faces (trained on WIDER FACE) are listed "
           "first; a column follows the sidebar's choice for its variant until you pick other weights here.")
pickers = st.columns(len(slots))
chosen: list[WeightsOption] = []
for i, (col, slot) in enumerate(zip(pickers, slots, strict=True)):
    widget, follows = f"hm_weights_{i}", f"_hm_follows_{i}"
    value, synced = sync_column(st.session_state.get(widget), st.session_state.get(follows), selection[slot].key,
                                by_key)
    st.session_state[widget], st.session_state[follows] = value, synced
    option = by_key[col.selectbox(f"Column {i + 1} weights", list(by_key), key=widget,
                                  format_func=lambda k: column_choice_label(by_key[k]))]
    steps = epoch_steps(option, training_steps(option))
    if steps is not None:
        epoch = col.select_slider("Training epoch", options=list(steps.epochs), value=steps.start,
                                  key=f"hm_epoch_{i}_{key_token(option.key)}",
                                  help="the checkpoints saved during this run: how the masks formed while it trained")
        option = steps.option(epoch)
    chosen.append(option)

# One forward pass per column
digest = image_digest(rgb)
results: dict[int, tuple] = {}
for i, option in enumerate(chosen):
    try:
        model = get_model(option.model, option)
    except (CheckpointError, SourceError, ValueError, OSError) as exc:
        st.error(f"**{display_name(option.model)}** could not be loaded from `{option.label}`: {rel_paths(exc)}")
        continue
    try:
        results[i] = inspect(option.model, weights_fingerprint(option), digest, model, rgb, has_masks(option.model))
    except Exception as exc:  # noqa: BLE001 - one model failing must not take the others down
        st.error(f"**{display_name(option.model)}** failed on {image_name}: {rel_paths(exc)}")

view, view_scale = view_image(rgb)
st.caption(f"{image_name}: {rgb.shape[1]}×{rgb.shape[0]} px · level **{level}** · "
           "ECA-CBAM sequential: spatial mask computed from the channel-refined map; parallel: from the input.")
st.caption(skipped_models_note())
columns = st.columns(len(chosen))
for i, (col, option) in enumerate(zip(columns, chosen, strict=True)):
    with col:
        st.markdown(f"#### {display_name(option.model)}")
        st.caption(f"weights: {option.label}")
        (st.success if option.real else st.warning)(faces_learned(option))
        if i not in results:
            st.warning("Not available (see the error above).")
            continue
        drawn = column_view(view, view_scale, *results[i], conf=conf, level=level, alpha=alpha, colormap=colormap,
                            normalize=normalize, top_k=top_k)
        st.image(drawn.detections, output_format="JPEG", caption=f"{drawn.shown} detection(s) ≥ {conf:.2f}"
                 + (f" (top {MAX_DRAWN} drawn)" if drawn.shown > MAX_DRAWN else ""))
        if drawn.channels is None:
            st.info(f"{display_name(option.model)} has no attention blocks: no channel, spatial or hybrid mask "
                    "to draw, only its detections.")
            continue
        fig = px.bar(drawn.channels, x="label", y="weight", color="level" if level == "all" else None,
                     labels={"label": "channel", "weight": "M_c"}, range_y=[0, 1])
        fig.update_layout(height=230, margin=dict(l=10, r=10, t=30, b=10), showlegend=level == "all",
                          title=f"strongest channels ({level})")
        st.plotly_chart(fig, key=f"hm_chan_{i}", config={"displayModeBar": False})
        st.image(drawn.spatial, output_format="JPEG",
                 caption="spatial mask M_s [{:.2f}, {:.2f}]".format(*drawn.spatial_range))
        st.image(drawn.hybrid, output_format="JPEG",
                 caption="hybrid mask mean_c(M_c·M_s) [{:.2f}, {:.2f}]".format(*drawn.hybrid_range))

# Parallel minus sequential
st.subheader("Parallel minus sequential (hybrid mask)")
par = next((i for i, o in enumerate(chosen) if o.model == PAR and i in results), None)
seq = next((i for i, o in enumerate(chosen) if o.model == SEQ and i in results), None)
if par is not None and seq is not None:
    st.caption(f"parallel: {chosen[par].label} · sequential: {chosen[seq].label}")
    overlay, diff, limit = difference_view(view, results[par][1], results[seq][1], level, alpha)
    d1, d2 = st.columns([3, 2])
    d1.image(overlay, output_format="JPEG",
             caption=f"red: parallel gates more strongly, blue: sequential does; white: equal (scale ±{limit:.3f})")
    fig = px.imshow(diff, color_continuous_scale="RdBu_r", zmin=-max(limit, 1e-6), zmax=max(limit, 1e-6),
                    labels={"color": "Δ hybrid"}, aspect="equal")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
    d2.plotly_chart(fig, key="hm_diff")
    d2.metric("mean |Δ|", f"{float(np.abs(diff).mean()):.2e}")
else:
    st.info("Needs an ECA-CBAM sequential and an ECA-CBAM parallel column.")

# Download
st.subheader("Download the 2×4 figure")
dl_cols = st.columns(len(chosen))
for i, (col, option) in enumerate(zip(dl_cols, chosen, strict=True)):
    if i not in results or results[i][1] is None:
        continue
    label = option.label.replace("—", "-").encode("ascii", "replace").decode()  # cv2 text is ASCII only

    def make_png(option=option, label=label) -> bytes:
        model = get_model(option.model, option, fold_bn=False)  # unfolded: the figure prints the parameter count
        with interactive_torch_threads(1):
            return heatmap_png(model, rgb, conf_thresh=conf, weights_label=label, colormap=colormap, alpha=alpha)

    col.download_button(f"{display_name(option.model)} (PNG)", data=make_png, mime="image/png", on_click="ignore",
                        file_name=f"attention_heatmaps__{option.model}__{Path(image_name).stem}.png",
                        key=f"hm_dl_{i}")
st.caption("Row 1: image with detections, stage1–3 hybrid masks; row 2: legend, P3–P5 hybrid masks. "
           "Made by eval/attention/figures.py on click (same single-pass masks).")

# Heatmap quality over the val set
st.subheader("Heatmap quality over the val images")
report_path = get_roots().results / DEFAULT_OUT
if not report_path.is_file():
    st.info(f"No heatmap-quality report at `{rel_paths(report_path)}`. `.venv/bin/python -m eval.attention_stats "
            f"--data <dataset root> --out {rel_paths(report_path)}` writes it from the checkpoints under runs/ (needs "
            "the val images with their ground truth).")
else:
    try:
        report = load_report(report_path, root=get_roots().results)
    except AttentionStatsError as exc:
        st.error(rel_paths(exc))
    else:
        st.caption(f"{dataset_label(report['dataset'])} · {report.get('num_images', '?')} val images with faces · "
                   f"models: {', '.join(display_name(m) for m in report.get('models', []))} · masks from the real "
                   "forward pass, upsampled as the overlays above. Mean over images with 95% bootstrap CI; the "
                   "dashed line is chance (share of the image inside face boxes). The channel-averaged hybrid mask "
                   "is the spatial mask times a constant, so only its share above 0.5 differs.")
        kind = st.radio("Mask", MASK_KINDS, horizontal=True, key="hm_stats_mask")
        for tab, lvl in zip(st.tabs(list(ALL_LEVELS)), ALL_LEVELS, strict=True):
            with tab:
                st.dataframe(stats_table(report, lvl, kind), hide_index=True, width="stretch")
                st.plotly_chart(stats_figure(report, lvl, kind), width="stretch", key=f"hm_stats_fig_{lvl}")
                st.dataframe(pair_table(report, lvl, kind, ("energy_in_boxes", "pointing_game", "energy_gain",
                                                            "entropy")),
                             hide_index=True, width="stretch")
        st.caption("Pairs: B − A over the same image resamples; *higher*/*lower* only when the 95% CI excludes 0.")
