"""Dashboard front half (Overview, Models, Heatmaps) driven headless with streamlit's AppTest.

Model caches (st.cache_resource / st.cache_data) are process-wide, so only the first heatmap run
pays for building models; images are kept small to stay fast on 2 CPU cores.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.boxes.postprocess import Detections
from core.checkpoint import atomic_torch_save, read_checkpoint, save_checkpoint
from core.detector import AttentionUnavailableError
from core.factory import build_model
from core.lab.artifacts import dataset_label
from core.lab.roots import resolve_roots
from dashboard.logic.heatmaps import image_digest
from dashboard.logic.inventory import build_inventory
from dashboard.logic.model_summary import ATTENTION_DESIGNS, parameter_table, summary_table
from dashboard.logic.weights import discover_weights
from eval.attention.drawing import (
    LEVEL_CHOICES,
    diverging_colors,
    diverging_overlay,
    draw_detections,
    filter_detections,
    hybrid_difference,
    level_masks,
    top_channels,
)

st_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = st_testing.AppTest

VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"
APP = VIEWS.parent / "app.py"
REPO = VIEWS.parents[1]
TIMEOUT = 120


def png(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(side: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.fixture
def isolated_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty results and runs roots, so pages see a known, mostly empty world."""
    (tmp_path / "results").mkdir()
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def run_page(name: str) -> AppTest:
    """The page as a user gets it: through app.py (navigation, sidebar), so widget changes and uploads
    reach it on every rerun."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def image_count(at: AppTest) -> int:
    return len(at.get("image"))


# Pure helpers


@pytest.fixture(scope="module")
def maps() -> dict:
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return {n: build_model(n).eval().inspect(rgb, 0.3) for n in ("eca_cbam", "eca_cbam_parallel")}


def test_level_masks_and_top_channels(maps: dict) -> None:
    _, heat = maps["eca_cbam"]
    for level in LEVEL_CHOICES:
        m = level_masks(heat, level)
        assert m["spatial"].ndim == 2 and m["hybrid"].shape == m["spatial"].shape
        assert (m["channel"] is None) == (level == "all")
        top = top_channels(heat, level, 5)
        assert len(top) == 5 and top["weight"].is_monotonic_decreasing
    assert level_masks(heat, "all")["spatial"].shape == heat["backbone"]["stage1"]["spatial_mask"].shape
    assert set(top_channels(heat, "all", 1000)["level"]) == {"stage1", "stage2", "stage3", "P3", "P4", "P5"}
    with pytest.raises(KeyError):
        level_masks(heat, "P9")


def test_difference_and_diverging(maps: dict) -> None:
    diff = hybrid_difference(maps["eca_cbam_parallel"][1], maps["eca_cbam"][1], "P3")
    assert diff.shape == maps["eca_cbam"][1]["bifpn"]["P3"]["hybrid_mask"].shape
    assert np.abs(diff).max() <= 1.0
    assert np.allclose(hybrid_difference(maps["eca_cbam"][1], maps["eca_cbam"][1], "all"), 0)
    colors = diverging_colors(np.array([-1.0, 0.0, 1.0]), 1.0)
    assert colors[1].tolist() == [247, 247, 247] and colors[0, 2] > colors[0, 0] and colors[2, 0] > colors[2, 2]
    rgb = np.zeros((40, 50, 3), np.uint8)
    assert diverging_overlay(rgb, np.zeros((5, 5), np.float32)).shape == (40, 50, 3)


def test_detection_helpers() -> None:
    dets = Detections(boxes=np.array([[1, 1, 10, 10], [5, 5, 20, 20]], np.float32),
                      scores=np.array([0.9, 0.4], np.float32), landmarks=np.zeros((2, 10), np.float32))
    assert len(filter_detections(dets, 0.5)) == 1
    out = draw_detections(np.zeros((30, 30, 3), np.uint8), dets)
    assert out.shape == (30, 30, 3) and out.any()
    a = np.zeros((4, 4, 3), np.uint8)
    assert image_digest(a) != image_digest(a.reshape(4, 12, 1)) and image_digest(a) == image_digest(a.copy())


def test_model_summary() -> None:
    table = summary_table(("eca_cbam", "eca_cbam_parallel", "none"))
    assert table["params"].tolist() == [476_345, 476_345, 475_735]
    assert table["GFLOPs"].iloc[0] == table["GFLOPs"].iloc[1] > table["GFLOPs"].iloc[2]
    params = parameter_table(("cbam",))
    assert params["params"].sum() == 488_664
    assert all(d.dot.startswith("digraph") for d in ATTENTION_DESIGNS.values())


def test_inventory_and_dataset_labels(tmp_path: Path) -> None:
    assert "NOT WIDERFace" in dataset_label("synthetic") and dataset_label("widerface") == "WIDERFace val"
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([{"model": "cbam", "dataset": "synthetic"}]).to_csv(results / "comparison_table.csv", index=False)
    inv = build_inventory(resolve_roots(["--results-dir", str(results)], {}, tmp_path))
    assert [r["file"] for r in inv.results] == ["comparison_table.csv"] and inv.results[0]["datasets"] == ["synthetic"]
    commands = "\n".join(m.command for m in inv.missing)
    assert "python -m eval.latency" in commands and "--dataset widerface" in commands
    assert "python -m train" in commands and not any(m.what.startswith("AP comparison") for m in inv.missing)
    assert inv.manifest is None and any("demo" in m.what for m in inv.missing)


# Pages


def test_app_navigation_reaches_every_page_of_mine(isolated_roots: Path) -> None:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("What is compared" in s.value for s in at.subheader)
    for page, needle in (("views/models.py", "Attention designs"), ("views/heatmaps.py", "Parallel minus")):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(needle in s.value for s in at.subheader)


def test_overview_lists_missing_with_commands(isolated_roots: Path) -> None:
    at = run_page("overview")
    codes = "\n".join(c.value for c in at.code)
    assert "python -m eval.results" in codes and "python -m eval.latency" in codes
    assert len(at.dataframe) >= 2
    assert at.sidebar.selectbox(key="ff_weights_cbam") is not None


def test_overview_shows_study_progress_and_refreshes(isolated_roots: Path) -> None:
    from core.lab.study_manifest import RunEntry, StudyManifest, write_manifest

    study = isolated_roots / "runs" / "st"
    manifest = StudyManifest(name="st", data="d", models=["cbam"], seeds=[0, 1], executor="local",
                             runs={f"cbam_s{s}": RunEntry(model="cbam", seed=s, state="running") for s in (0, 1)})
    write_manifest(study, manifest)
    (study / "cbam_s0").mkdir()
    (study / "cbam_s0" / "run.json").write_text('{"model": "cbam", "dataset": "synthetic", "max_epoch": 4, '
                                                 '"status": "running"}')
    (isolated_roots / "runs" / "broken").mkdir()
    (isolated_roots / "runs" / "broken" / "study.json").write_text("{oops")
    at = run_page("overview")

    def first_metrics() -> dict[str, str]:  # this study comes first; the shipped demo's study may follow
        out: dict[str, str] = {}
        for m in at.metric:
            out.setdefault(m.label, m.value)
        return out

    metrics = first_metrics()
    assert metrics["running"] == "2" and metrics["done"] == "0"
    table = next(d.value for d in at.dataframe if "job id" in d.value.columns)
    assert table["epochs"].tolist() == ["0/4", "0"]
    assert any("unreadable study manifest" in w.value for w in at.warning)  # a bad study.json never breaks the page

    (study / "cbam_s0" / "weights").mkdir()
    (study / "cbam_s0" / "weights" / "Final.pth").write_bytes(b"x")
    (study / "cbam_s0" / "run.json").write_text('{"model": "cbam", "dataset": "synthetic", "max_epoch": 4, '
                                                 '"status": "finished", "epochs_done": 4}')
    at.button(key="study_refresh").click().run()
    assert not at.exception
    metrics = first_metrics()
    assert metrics["done"] == "1" and metrics["running"] == "1"
    assert next(d.value for d in at.dataframe if "job id" in d.value.columns)["epochs"].tolist() == ["4/4", "0"]


def test_overview_shows_slurm_runs_as_status_does(isolated_roots: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A job SLURM no longer has is failed on the page too, with its log and the log's last line."""
    from core.lab.study_manifest import RunEntry, StudyManifest, write_manifest
    from eval.runs.study_progress import failure_lines, study_progress

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho '31_0|RUNNING'\n")  # 31_1: gone, no accounting
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    study = isolated_roots / "runs" / "cl"
    log = study / "slurm" / "31_1" / "31_1_0_log.out"
    manifest = StudyManifest(name="cl", data="d", models=["cbam"], seeds=[0, 1], executor="slurm", runs={
        f"cbam_s{s}": RunEntry(model="cbam", seed=s, state="pending", job_id=f"31_{s}", job_log=str(log) if s else None)
        for s in (0, 1)})
    write_manifest(study, manifest)
    log.parent.mkdir(parents=True)
    log.write_text("Traceback (most recent call last):\nModuleNotFoundError: No module named 'pkg_resources'\n")
    at = run_page("overview")
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "job id" in d.value.columns and "31_0" in set(d.value["job id"]))
    assert table.set_index("run")["state"].to_dict() == {"cbam_s0": "running", "cbam_s1": "failed"}
    expected = failure_lines(study_progress(study))
    assert expected == [f"failed: cbam_s1: see {log} (slurm job 31_1 gone (SLURM no longer has it) before the run "
                        "finished); last line: ModuleNotFoundError: No module named 'pkg_resources'"]
    shown = expected[0].replace(f"{isolated_roots}/", "")  # the page names the log relative to its runs folder
    assert shown.startswith("failed: cbam_s1: see runs/cl/slurm/") and shown in [e.value for e in at.error]


def test_models_page(isolated_roots: Path) -> None:
    at = run_page("models")
    assert len(at.dataframe) >= 3
    assert len(at.get("plotly_chart")) >= 3 and len(at.get("graphviz_chart")) == 3
    assert any("deformable" in c.value for c in at.caption)
    summary = at.dataframe[0].value.set_index("model")  # the RetinaFace baseline against its published size
    assert summary.loc["retinaface_mnet", "params"] == summary.loc["retinaface_mnet", "published_params"] == 426_608


def test_heatmaps_sample_and_controls(isolated_roots: Path) -> None:
    at = run_page("heatmaps")
    assert not at.error
    assert any("RetinaFace-mnet0.25 (baseline)" in c.value and "no attention blocks" in c.value for c in at.caption)
    assert any("always come from the PyTorch forward pass" in c.value for c in at.caption)
    assert image_count(at) >= 10  # 3 models x (detections, spatial, hybrid) + difference
    assert len(at.get("download_button")) == 3
    at.selectbox(key="hm_level").set_value("all")
    at.selectbox(key="hm_cmap").set_value("viridis")
    at.slider(key="hm_alpha").set_value(0.8)
    at.checkbox(key="hm_norm").uncheck()
    at.run()
    assert not at.exception and not at.error and image_count(at) >= 10
    at.selectbox(key="hm_level").set_value("P5").run()
    assert not at.exception and len(at.get("plotly_chart")) == 4


GOOD_UPLOADS = {
    "gray.png": png(np.full((48, 64), 128, np.uint8)),
    "rgba.png": png(np.random.default_rng(0).integers(0, 255, (48, 64, 4), dtype=np.uint8)),
    "deep16.png": png(np.full((48, 64), 30000, np.uint16)),
    "cmyk.jpg": png(np.full((48, 64, 3), 90, np.uint8), mode="CMYK", fmt="JPEG"),
}
_valid = png(np.random.default_rng(1).integers(0, 255, (120, 120, 3), dtype=np.uint8), fmt="JPEG")
BAD_UPLOADS = {
    "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"\x13" * 200,
    "truncated.jpg": _valid[: len(_valid) // 2],
    "zero.png": b"",
    "notes.png": b"this is a text file, not an image\n" * 20,
    "paper.png": b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
    "bomb.png": bomb_png(),
    "huge.png": b"\x89PNG" + b"\x00" * (20 * 2**20 + 1),
}


def upload(at: AppTest, files: dict[str, bytes]) -> AppTest:
    at.file_uploader(key="hm_uploads").set_value([(n, d, "application/octet-stream") for n, d in files.items()])
    return at.run()


def test_heatmaps_bad_uploads_each_give_an_error_and_page_still_renders(isolated_roots: Path) -> None:
    at = run_page("heatmaps")
    upload(at, {**BAD_UPLOADS, "ok.jpg": _valid})
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == len(BAD_UPLOADS), errors
    for name in BAD_UPLOADS:
        assert any(name in e for e in errors), name
    assert image_count(at) >= 10  # the valid upload is analysed
    upload(at, BAD_UPLOADS)  # nothing usable: errors, then the bundled sample
    assert not at.exception and len(at.error) == len(BAD_UPLOADS) and image_count(at) >= 10
    assert any("bundled sample" in i.value for i in at.info)


def test_heatmaps_odd_but_valid_uploads(isolated_roots: Path) -> None:
    at = run_page("heatmaps")
    upload(at, GOOD_UPLOADS)
    assert not at.exception and not at.error, [e.value for e in at.error]
    pick = at.selectbox(key="hm_pick")
    assert pick.options == list(GOOD_UPLOADS)
    for name in GOOD_UPLOADS:
        pick.set_value(name).run()
        assert not at.exception and not at.error and image_count(at) >= 10


def test_bad_checkpoints_clear_errors_other_models_still_shown(isolated_roots: Path) -> None:
    runs = isolated_roots / "runs"
    (runs / "broken").mkdir()
    (runs / "broken" / "corrupt.pth").write_bytes(b"PK\x03\x04 not really a zip")
    # A checkpoint that says "cbam" but holds ECA-CBAM parallel weights (e.g. a mislabelled file).
    save_checkpoint(runs / "mix" / "parallel.pth", build_model("eca_cbam_parallel"))
    data = read_checkpoint(runs / "mix" / "parallel.pth")
    cbam_cfg = read_checkpoint_config("cbam")
    atomic_torch_save({**data, "model_name": "cbam", "config": cbam_cfg}, runs / "mix" / "mislabelled.pth")

    at = run_page("heatmaps")
    box = at.sidebar.selectbox(key="ff_weights_cbam")
    roots = resolve_roots([], os.environ, REPO)
    bad_key = next(o.key for o in discover_weights("cbam", roots) if o.path and o.path.name == "mislabelled.pth")
    assert any("mislabelled.pth" in label for label in box.options)
    box.set_value(bad_key).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "CBAM baseline" in errors[0] and "does not fit model" in errors[0]
    assert any("Not available" in w.value for w in at.warning)
    assert image_count(at) >= 7  # two models x 3 images + the difference view
    skipped = [e.label for e in at.sidebar.expander if "skipped" in e.label]
    assert skipped and skipped[0].startswith("⚠️ 1 ")
    assert any("corrupt" in c.value for c in at.sidebar.caption)
    par = at.sidebar.selectbox(key="ff_weights_eca_cbam_parallel")
    assert any("parallel.pth" in label for label in par.options)  # offered under its real name


def read_checkpoint_config(name: str) -> dict:
    from dataclasses import asdict

    from core.config import get_config

    return asdict(get_config(name))


def test_attention_unavailable_for_none() -> None:
    with pytest.raises(AttentionUnavailableError):
        build_model("none").inspect(np.zeros((32, 32, 3), np.uint8))


def test_pages_are_views_of_the_router_only() -> None:
    """No legacy pages/ folder (Streamlit would run its files alone, without app.py), and no page repeats
    the sys.path set-up or renders the sidebar itself."""
    assert not (APP.parent / "pages").exists()
    for page in sorted(VIEWS.glob("*.py")):
        text = page.read_text(encoding="utf-8")
        assert "sys.path" not in text and "render_sidebar" not in text, page.name
    assert "sys.path.insert" in APP.read_text(encoding="utf-8")


def test_widget_changes_and_uploads_reach_the_page_through_the_app(isolated_roots: Path) -> None:
    """Through app.py a changed slider keeps its value and an upload replaces the bundled sample."""
    at = run_page("heatmaps")
    at.slider(key="hm_alpha").set_value(0.8)
    upload(at, {"ok.jpg": _valid})
    assert not at.exception and [t.value for t in at.title] == ["Attention heatmaps"]
    assert at.slider(key="hm_alpha").value == 0.8
    assert at.selectbox(key="hm_sample").disabled  # the upload is in use
    assert any(c.value.startswith("ok.jpg: 120×120 px") for c in at.caption)
