"""Results page: measured AP beside the published rows and targets, seed spread, deltas, PR curves, the
per-attribute breakdown, AP differences with bootstrap CIs, and the val images where two models differ most.
Logic lives in eval.verdicts.tables, eval.verdicts.paired_ap and dashboard.logic.missed_faces; every dataset
is kept apart."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.wider_gt import SETTINGS, WiderGT, load_wider_gt
from core.lab.roots import REPO_ROOT, SourceError, confine
from dashboard.common import get_model, get_roots, interactive_torch_threads, rel_paths, rel_paths_frame
from dashboard.logic.missed_faces import (
    checkpoint_option,
    draw_panel,
    image_differences,
    panel_boxes,
    predict_val,
    read_payload,
    resolve_pair,
    side_mask,
)
from dashboard.logic.results_figures import attribute_figure, pr_figure, style_combined, style_deltas
from dashboard.logic.weights import read_manifest
from eval.verdicts.paired_ap import COMPARE_DIR, difference_table, load_reports
from eval.verdicts.results_files import load_comparison, load_eval_records, load_reference
from eval.verdicts.tables import (
    aggregate_seeds,
    attribute_pivot,
    attribute_table,
    combined_table,
    dataset_label,
    delta_table,
    deltas,
    mean_std_table,
    vs_reference,
)
from eval.widerface.submission import Predictions, read_predictions


@st.cache_resource(show_spinner="Reading the ground truth…", max_entries=4)
def load_gt(gt_dir: str) -> WiderGT:
    return load_wider_gt(gt_dir)


@st.cache_resource(show_spinner="Reading predictions…", max_entries=8)
def load_predictions(folder: str, gt_dir: str) -> Predictions:
    """Lenient: a bad line is skipped (and counted by eval.results), never a crash of the page."""
    return read_predictions(folder, load_gt(gt_dir), strict=False).predictions

st.title("Results")
roots = get_roots()
st.caption(f"From `{rel_paths(roots.results)}`: comparison_table.csv (measured), reference_results.csv (published and "
           "targets) and eval/*.json (PR curves, attributes). AP in percent.")

comp = load_comparison(roots.results)
ref = load_reference(roots.results)
for msg in comp.errors:
    st.error(f"Measured results unusable: {rel_paths(msg)}")
for msg in comp.notes:
    (st.info if comp.missing else st.warning)(rel_paths(msg))
for msg in ref.errors:
    st.warning(rel_paths(msg))

st.subheader("AP table")
table = rel_paths_frame(combined_table(comp.frame, ref.frame))  # paths in cells: relative to their folder
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
    st.warning(rel_paths(msg))
if not records:
    st.info(f"No evaluation files under `{rel_paths(roots.results / 'eval')}` (written by "
            "`.venv/bin/python -m eval.results`).")
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

# AP differences with uncertainty
st.subheader("AP differences with 95% CIs (paired image bootstrap)")
reports, report_warnings = load_reports(roots.results)
for msg in report_warnings:
    st.warning(rel_paths(msg))
if not reports:
    st.info(f"No AP comparisons under `{rel_paths(roots.results / COMPARE_DIR)}`. `.venv/bin/python -m "
            f"eval.compare_ap --results {rel_paths(roots.results)}` writes one per model pair from the prediction "
            "folders of `eval.results` (seeds pooled); without them the table above has no CI for its deltas.")
else:
    with_breakdown = st.toggle("Include the hard-set attribute and scale subsets", key="res_cmp_breakdown")
    st.dataframe(difference_table(reports, with_breakdown).style.format(
        {c: "{:+.2f}" for c in ("delta", "CI low", "CI high")} | {"AP A": "{:.2f}", "AP B": "{:.2f}"}),
        hide_index=True, width="stretch")
    st.caption("AP points, B − A. The same resampled val images score both models; *better*/*worse* only when the "
               "CI excludes 0. Several seeds: the mean over seeds, and the CI also resamples seeds "
               "(*images + seeds*); *seed sd*: spread of the seeds' own APs.")

# Where the models differ
st.subheader("Where the models differ")
if not records:
    st.info("Needs evaluation files (`.venv/bin/python -m eval.results`).")
else:
    payloads = {str(r.path): read_payload(r.path) for r in records if r.dataset == dataset}
    labels = {str(r.path): r.label for r in records if r.dataset == dataset}
    keys = list(payloads)
    if len(keys) < 2:
        st.info(f"Needs two evaluations on {dataset_label(dataset)}; there is {len(keys)}.")
    else:
        w1, w2, w3, w4 = st.columns([3, 3, 2, 1])
        key_a = w1.selectbox("Model A", keys, index=0, format_func=labels.get, key="res_diff_a")
        key_b = w2.selectbox("Model B", keys, index=min(len(keys) - 1, 2), format_func=labels.get, key="res_diff_b")
        thresh = w3.slider("Score threshold", 0.05, 0.95, 0.5, 0.05, key="res_diff_thresh")
        setting = w4.selectbox("Faces", SETTINGS, index=2, key="res_diff_setting")
        src = resolve_pair(payloads[key_a], payloads[key_b], REPO_ROOT, roots.all, roots.weights,
                           read_manifest(roots))
        for note in src.notes:
            st.caption(f"· {rel_paths(note)}")
        if src.missing:
            st.info(rel_paths(src.missing))
        else:
            gt = load_gt(str(src.data / "ground_truth"))
            preds = [load_predictions(str(p), str(src.data / "ground_truth")) if p is not None else None
                     for p in src.predictions]
            if any(p is None for p in preds):
                run_key = ("res_diff_live", key_a, key_b)
                if run_key not in st.session_state:
                    st.info("Prediction folders are absent; the images and both checkpoints are here.")
                    if st.button(f"Run both models over the {len(gt)} val images", key="res_diff_run"):
                        bar = st.progress(0.0, text="predicting…")
                        live = []
                        for side, (key, ckpt) in enumerate(zip((key_a, key_b), src.weights, strict=True)):
                            model = get_model(payloads[key]["model"], checkpoint_option(payloads[key], ckpt))
                            with interactive_torch_threads(2):
                                live.append(predict_val(model, src.data, lambda i, n, s=side, name=labels[key]:
                                                        bar.progress((s + i / n) / 2, text=f"{name}: {i}/{n} images")))
                        st.session_state[run_key] = live
                        bar.empty()
                preds = st.session_state.get(run_key, [None, None])
            if all(p is not None for p in preds):
                diffs = image_differences(preds[0], preds[1], gt, thresh, setting)
                top = diffs.head(20)
                st.dataframe(top, hide_index=True, width="stretch")
                st.caption(f"{setting} faces found at score ≥ {thresh:.2f}: A {int(diffs['found_a'].sum())}, "
                           f"B {int(diffs['found_b'].sum())} of {int(diffs['faces'].sum())}; *only_a/only_b*: faces "
                           "one model finds and the other misses; *fp*: false positives.")
                pick = st.selectbox("Image", range(len(top)), key="res_diff_pick",
                                    format_func=lambda i: f"{top.iloc[i]['event']}/{top.iloc[i]['image']} "
                                                          f"(difference {top.iloc[i]['difference']})")
                row = top.iloc[pick]
                from eval.attention.drawing import LEVEL_CHOICES
                from eval.widerface.predict import read_rgb

                im = gt.index[(row["event"], row["image"])]
                image_file = src.data / "val" / "images" / im.event / f"{im.name}.jpg"
                try:  # names come from the ground truth file: "../" in them must not leave the dataset folder
                    rgb = read_rgb(confine(image_file, src.data))
                except SourceError:
                    st.info(f"Image `{rel_paths(image_file)}` is absent: the table above comes from the predictions "
                            "alone.")
                else:
                    level = st.selectbox("Mask level", ("none", *LEVEL_CHOICES), index=4, key="res_diff_level")
                    cols = st.columns(2)
                    for col, key, pred, ckpt in zip(cols, (key_a, key_b), preds, src.weights, strict=True):
                        model = get_model(payloads[key]["model"], checkpoint_option(payloads[key], ckpt)) \
                            if ckpt is not None and level != "none" else None
                        with interactive_torch_threads(1):
                            mask, why = side_mask(model, rgb, level)
                        parts = panel_boxes(im, pred.get(im.event, {}).get(im.name, np.zeros((0, 5))), thresh,
                                            setting)
                        col.image(draw_panel(rgb, parts, mask), output_format="JPEG",
                                  caption=f"{labels[key]}: {len(parts.true_positive)} found, "
                                          f"{len(parts.false_positive)} false positive(s)"
                                          + (f" · {level} hybrid mask" if mask is not None else f" · {why}"
                                             if why else ""))
                    st.caption("Gold: counted ground-truth faces; grey: faces outside the setting (and detections "
                               "matching them); green: detections that find a face; red: false positives.")
