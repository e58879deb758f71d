"""The shipped real detectors under assets/reference: each loads strictly into its model, records the sha256 of
the published file it was made from (the values in ../shared/reference/SOURCES.md), and a fresh conversion of
the published files gives the same tensors (`python -m eval.reference_assets --check`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoint import atomic_torch_save, load_checkpoint, read_checkpoint
from core.lab.artifacts import find_runs
from eval.deploy.reference_assets import main
from tests.conftest import ROOT, exit_status

SHIPPED = ROOT / "assets" / "reference"
RUN = SHIPPED / "runs" / "featherface_eca_cbam"
SHARED = next((p for p in (ROOT.parent / "shared" / "reference", Path("/work/shared/reference")) if p.is_dir()),
              None)
# ../shared/reference/SOURCES.md
PUBLISHED_SHA = {
    "Final.pth": "81cdeffd35c13e2123d63080c9bd16a9eebe6f8e0579994ad6322b6393a10666",
    "retinaface_mnet.pth": "78b0533ceea681a290e98efca85e3a2815b22310f1fe7e287788e7f55f0743a9",
}


def test_final_eca_cbam_and_retinaface_are_real_trained_weights():
    model, meta = load_checkpoint(RUN / "weights" / "Final.pth", expected_name="eca_cbam")
    assert meta["dataset"] == "widerface" and meta["epoch"] == 350
    assert meta["source"]["sha256"] == PUBLISHED_SHA["Final.pth"]
    assert meta["source"]["trained_by"] == "fokouarnaud/FeatherFace"
    assert meta["source"]["origin"].endswith("weights/eca_cbam/featherface_eca_cbam_final.pth")
    assert model.get_parameter_count()["total"] == 476_345
    model, meta = load_checkpoint(SHIPPED / "retinaface_mnet.pth", expected_name="retinaface_mnet")
    assert meta["source"]["sha256"] == PUBLISHED_SHA["retinaface_mnet.pth"] and meta["dataset"] == "widerface"
    assert meta["source"]["trained_by"] == "biubug6/Pytorch_Retinaface"
    assert model.get_parameter_count()["total"] == 426_608


def test_shipped_eca_cbam_finds_the_astronaut_as_the_source_does():
    """0.99223 is the source's own code on this image at its original scale (tests/core/test_source_parity.py makes
    the known answers); the shipped conversion must give it through model.detect, and only that face."""
    import cv2

    model, _ = load_checkpoint(RUN / "weights" / "Final.pth", expected_name="eca_cbam")
    rgb = cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "samples" / "astronaut.png")), cv2.COLOR_BGR2RGB)
    dets = model.eval().detect(rgb, conf_thresh=0.5, nms_thresh=0.4)
    assert len(dets.scores) == 1 and abs(float(dets.scores[0]) - 0.99223) < 1e-3
    x1, y1, x2, y2 = dets.boxes[0].tolist()
    assert 170 < x1 < x2 < 285 and 45 < y1 < y2 < 190  # the face, not the helmet or the suit


def test_epoch_checkpoints_form_one_run_with_its_log():
    epochs = {}
    for path in sorted((RUN / "weights").glob("*.pth")):
        _, meta = load_checkpoint(path, expected_name="eca_cbam")
        epochs[path.name] = meta["epoch"]
        assert meta["source"]["file"] == ("featherface_eca_cbam_final.pth" if path.name == "Final.pth"
                                          else f"featherface_eca_cbam_epoch_{meta['epoch']}.pth")
    assert sorted(epochs.values()) == [50, 100, 150, 200, 250, 300, 350] and epochs["Final.pth"] == 350
    runs, warnings = find_runs(SHIPPED / "runs")
    assert not warnings and [(r.name, r.model, r.dataset) for r in runs] == [
        ("featherface_eca_cbam", "eca_cbam", "widerface")]
    meta = json.loads((RUN / "run.json").read_text())
    log = RUN / meta["event_file"]["name"]
    assert log.is_file() and log.name.startswith("events.out.tfevents.") and log.stat().st_size == 895_449


def test_notice_names_every_file_origin_and_licence():
    text = (SHIPPED / "SOURCES.md").read_text()
    for path in [*RUN.glob("weights/*.pth"), SHIPPED / "retinaface_mnet.pth", *RUN.glob("events.out.tfevents.*")]:
        assert f"`{path.relative_to(SHIPPED).as_posix()}`" in text, path
    assert all(sha in text for sha in PUBLISHED_SHA.values())
    assert "Copyright (c) 2025 dohunKim" in text and "Copyright (c) 2019" in text and "MIT" in text
    assert "python -m eval.reference_assets" in text


@pytest.mark.skipif(SHARED is None, reason="the published reference files (../shared/reference) are not here")
def test_shipped_files_are_a_fresh_conversion_of_the_published_ones(capsys):
    assert main(["--shared", str(SHARED), "--out", str(SHIPPED), "--check"]) == 0, capsys.readouterr().err
    assert "matches a fresh conversion" in capsys.readouterr().out


@pytest.mark.skipif(SHARED is None, reason="the published reference files (../shared/reference) are not here")
def test_check_reports_a_changed_file(tmp_path, capsys):
    out = tmp_path / "ref"
    assert main(["--shared", str(SHARED), "--out", str(out)]) == 0
    (out / "retinaface_mnet.pth").write_bytes((RUN / "weights" / "epoch_050.pth").read_bytes())
    (out / "runs" / "featherface_eca_cbam" / "weights" / "epoch_100.pth").unlink()
    stale = out / "runs" / "featherface_eca_cbam" / "weights" / "epoch_150.pth"  # written by an older model build
    data = read_checkpoint(stale)
    atomic_torch_save({**data, "config": {k: v for k, v in data["config"].items() if k != "bgr_mean"}}, stale)
    assert main(["--shared", str(SHARED), "--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "retinaface_mnet.pth: model or source differs" in err and "epoch_100.pth: missing" in err
    assert "epoch_150.pth: built with another model config (bgr_mean): regenerate" in err


def test_missing_reference_folder_is_one_line(tmp_path, capsys):
    assert exit_status(main, ["--shared", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and not (tmp_path / "out").exists()
