"""Real trained detectors in the app: weights that learned real faces are listed first and labelled with who
trained them, synthetic ones say so, a run's epoch snapshots become the Heatmaps page's epoch stepper, and the
page opens on the shipped ECA-CBAM trained on WIDER FACE (eval logic first, then the page through app.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoint import save_checkpoint
from core.factory import build_model
from core.lab.roots import resolve_roots
from dashboard.logic.heatmaps import (
    EpochSteps,
    column_choices,
    column_models,
    epoch_steps,
    has_masks,
    sync_column,
)
from dashboard.logic.inventory import build_inventory
from dashboard.logic.weights import WeightsOption, discover_weights, faces_learned, run_steps, scan_checkpoints
from eval.runs.checkpoints import checkpoint_origin
from tests.conftest import ROOT

st_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = st_testing.AppTest
APP = ROOT / "dashboard" / "app.py"
SHIPPED_RUN = ROOT / "assets" / "reference" / "runs" / "featherface_eca_cbam"
TIMEOUT = 300


def real_ckpt(path: Path, model: str, epoch: int, by: str | None = "someone/Repo") -> None:
    source = {"file": "x.pth", "sha256": "0" * 64, "origin": "o"} | ({"trained_by": by} if by else {})
    save_checkpoint(path, build_model(model), dataset="widerface", epoch=epoch, source=source)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with a shipped reference run (Final + two snapshots), a reference RetinaFace, demo weights, a
    user's own run (last.pth at epoch 4, best.pth at epoch 2) and a user's converted WIDER FACE checkpoint."""
    repo = tmp_path_factory.mktemp("repo")
    run = repo / "assets" / "reference" / "runs" / "ref_eca"
    (run / "weights").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": "eca_cbam", "dataset": "widerface", "trained_by": "them"}))
    real_ckpt(run / "weights" / "Final.pth", "eca_cbam", 30, by="them")
    real_ckpt(run / "weights" / "epoch_010.pth", "eca_cbam", 10, by="them")
    real_ckpt(run / "weights" / "epoch_030.pth", "eca_cbam", 30, by="them")  # same epoch as Final: Final wins
    real_ckpt(repo / "assets" / "reference" / "retinaface_mnet.pth", "retinaface_mnet", 250, by="biubug6/X")
    demo = repo / "assets" / "demo"
    save_checkpoint(demo / "weights" / "eca_cbam_s0.pth", build_model("eca_cbam"), epoch=8, dataset="synthetic")
    (demo / "manifest.json").write_text(json.dumps({"dataset": "synthetic", "epochs": 8}))
    own = repo / "runs" / "mine"
    (own / "weights").mkdir(parents=True)
    (own / "run.json").write_text(json.dumps({"model": "eca_cbam", "dataset": "synthetic"}))
    save_checkpoint(own / "weights" / "last.pth", build_model("eca_cbam"), epoch=4, dataset="synthetic")
    save_checkpoint(own / "weights" / "best.pth", build_model("eca_cbam"), epoch=2, dataset="synthetic")
    real_ckpt(repo / "weights" / "converted.pth", "eca_cbam", 50, by=None)
    return repo


def test_real_weights_first_labelled_by_who_trained_them(repo: Path) -> None:
    roots = resolve_roots([], {}, repo)
    opts = discover_weights("eca_cbam", roots)
    assert [o.kind for o in opts] == ["reference", "checkpoint", "demo", "checkpoint", "checkpoint", "random"]
    assert [o.real for o in opts] == [True, True, False, False, False, False]
    assert opts[0].label == "trained on WIDER FACE by them (30 epochs)" and opts[0].path.name == "Final.pth"
    assert opts[1].label == "weights/converted.pth (trained on WIDER FACE, 50 epochs)"
    assert opts[2].label == "demo (synthetic, 8 epochs, seed 0)"
    assert not any(o.path is not None and o.path.name.startswith("epoch_") for o in opts)  # snapshots: steps only
    rf = discover_weights("retinaface_mnet", roots)
    assert rf[0].kind == "reference" and rf[0].label == "trained on WIDER FACE by biubug6/X (250 epochs)"


def test_faces_learned_says_real_synthetic_unknown_or_nothing(repo: Path) -> None:
    opts = discover_weights("eca_cbam", resolve_roots([], {}, repo))
    assert faces_learned(opts[0]).startswith("learned real faces")
    assert faces_learned(opts[2]) == "learned synthetic faces (generated images, not WIDER FACE)"
    assert faces_learned(opts[-1]).startswith("untrained")
    assert "unknown" in faces_learned(WeightsOption("cbam", "checkpoint", "x", path=Path("x.pth")))
    assert faces_learned(WeightsOption("cbam", "checkpoint", "x", path=Path("x.pth"), dataset="coco")) == \
        "trained on coco: not WIDER FACE"


def test_checkpoint_origin_names_who_trained_it() -> None:
    source = {"file": "f.pth", "sha256": "0" * 64, "origin": "them/Repo@abc:f.pth"}
    assert checkpoint_origin({"dataset": "widerface", "source": {**source, "trained_by": "them/Repo"}}) == \
        "trained on WIDER FACE by them/Repo, converted from them/Repo@abc:f.pth"
    assert checkpoint_origin({"source": source}) == "converted from them/Repo@abc:f.pth"


def test_run_steps_one_checkpoint_per_epoch(repo: Path) -> None:
    roots = resolve_roots([], {}, repo)
    scan = scan_checkpoints(roots)
    final = discover_weights("eca_cbam", roots, scan=scan)[0]
    steps = run_steps(final, roots, scan)
    assert [(s.epochs, s.path.name) for s in steps] == [(10, "epoch_010.pth"), (30, "Final.pth")]
    assert steps[0].label == "trained on WIDER FACE by them (epoch 10 snapshot)" and steps[0].real
    own = next(o for o in discover_weights("eca_cbam", roots, scan=scan) if o.path and o.path.name == "last.pth")
    assert [(s.epochs, s.path.name) for s in run_steps(own, roots, scan)] == [(2, "best.pth"), (4, "last.pth")]
    converted = discover_weights("eca_cbam", roots, scan=scan)[1]
    assert converted.run is None and run_steps(converted, roots, scan) == []  # not in a run: nothing to step
    stepper = epoch_steps(final, steps)
    assert isinstance(stepper, EpochSteps) and stepper.epochs == (10, 30) and stepper.start == 30
    assert stepper.option(10).path.name == "epoch_010.pth" and stepper.option(29).epochs == 10
    assert stepper.option(0).epochs == 10 and epoch_steps(final, steps[:1]) is None


def test_columns_open_on_real_weights_and_follow_the_sidebar(repo: Path) -> None:
    roots = resolve_roots([], {}, repo)
    options = {m: discover_weights(m, roots) for m in ("cbam", "eca_cbam", "eca_cbam_parallel", "retinaface_mnet")}
    selection = {m: options[m][0] for m in ("cbam", "eca_cbam", "eca_cbam_parallel")}
    assert column_models(selection) == ["eca_cbam", "cbam", "eca_cbam_parallel"]
    choices = column_choices(options)
    assert [o.real for o in choices[:3]] == [True, True, True] and not any(o.real for o in choices[3:])
    assert {o.model for o in choices[:3]} == {"eca_cbam", "retinaface_mnet"}
    keys = [o.key for o in choices]
    assert len(set(keys)) == len(keys)
    a, b = keys[0], keys[3]
    assert sync_column(None, None, a, keys) == (a, a)  # first run: the sidebar's choice
    assert sync_column(b, a, a, keys) == (b, a)  # the user's own pick stays while the sidebar is unchanged
    assert sync_column(b, a, keys[4], keys) == (keys[4], keys[4])  # the sidebar changed: follow it
    assert sync_column("gone", a, a, keys) == (a, a)
    assert has_masks("eca_cbam") and not has_masks("retinaface_mnet")


def test_inventory_lists_reference_runs_and_weights_apart_from_your_own(repo: Path, tmp_path: Path) -> None:
    inv = build_inventory(resolve_roots(["--runs-dir", str(tmp_path / "none")], {}, repo))
    assert [(r["run"], r["source"], r["dataset"]) for r in inv.runs] == [
        ("ref_eca", "reference, trained by them", "WIDER FACE (train)")]
    assert any(m.what.startswith("training runs of your own") for m in inv.missing)  # the reference is not yours
    assert inv.weights["retinaface_mnet"][0].label == "trained on WIDER FACE by biubug6/X (250 epochs)"


# The page, with the shipped weights


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("FEATHERFACE_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def heatmaps() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.switch_page("views/heatmaps.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def column_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("weights: ")]


def mask_captions(at: AppTest) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image")
            if img.proto.imgs and img.proto.imgs[0].caption.startswith(("spatial mask", "hybrid mask"))]


@pytest.mark.skipif(not (SHIPPED_RUN / "weights" / "Final.pth").is_file(), reason="assets/reference not shipped")
def test_heatmaps_opens_on_the_real_eca_cbam(isolated: Path) -> None:
    at = heatmaps()
    first = at.selectbox(key="hm_weights_0")
    assert first.value.endswith("assets/reference/runs/featherface_eca_cbam/weights/Final.pth")
    assert column_captions(at)[0] == "weights: trained on WIDER FACE by fokouarnaud/FeatherFace (350 epochs)"
    assert [s.value for s in at.success] == ["learned real faces: trained on WIDER FACE photographs"]
    assert [w.value for w in at.warning].count("learned synthetic faces (generated images, not WIDER FACE)") == 2
    assert len(mask_captions(at)) == 6 and not at.error
    assert at.sidebar.selectbox(key="ff_weights_eca_cbam").value == first.value  # the sidebar lists it first too
    detections = [img.proto.imgs[0].caption for img in at.get("image") if "detection(s)" in img.proto.imgs[0].caption]
    assert detections[0] == "1 detection(s) ≥ 0.50"  # the astronaut's face, the bundled sample shown first


@pytest.mark.skipif(not (SHIPPED_RUN / "weights" / "Final.pth").is_file(), reason="assets/reference not shipped")
def test_heatmaps_column_takes_any_weights(isolated: Path) -> None:
    at = heatmaps()
    box = at.selectbox(key="hm_weights_2")
    box.select_index(next(i for i, label in enumerate(box.options) if label.startswith("RetinaFace"))).run()
    assert not at.exception, [e.value for e in at.exception]
    assert column_captions(at)[2] == "weights: trained on WIDER FACE by biubug6/Pytorch_Retinaface"
    assert [s.value for s in at.success].count("learned real faces: trained on WIDER FACE photographs") == 2
    assert any("has no attention blocks" in i.value for i in at.info)
    assert len(mask_captions(at)) == 4 and len(at.get("download_button")) == 2
    assert any("Needs an ECA-CBAM sequential and an ECA-CBAM parallel column" in i.value for i in at.info)


@pytest.mark.skipif(not (SHIPPED_RUN / "weights" / "epoch_050.pth").is_file(), reason="assets/reference not shipped")
def test_heatmaps_epoch_stepper_changes_the_masks(isolated: Path) -> None:
    at = heatmaps()
    slider = next(s for s in at.get("select_slider") if s.key.startswith("hm_epoch_0_"))
    assert list(slider.options) == ["50", "100", "150", "200", "250", "300", "350"] and slider.value == 350
    before = mask_captions(at)[:2]
    slider.set_value(50).run()
    assert not at.exception, [e.value for e in at.exception]
    assert column_captions(at)[0] == "weights: trained on WIDER FACE by fokouarnaud/FeatherFace (epoch 50 snapshot)"
    after = mask_captions(at)[:2]
    assert after != before and len(mask_captions(at)) == 6
