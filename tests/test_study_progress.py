"""Study progress from study.json and the runs' files (states corrected by run.json, epochs from event files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from core.artifacts import TB_TAGS
from core.study_manifest import (
    RunEntry,
    StudyManifest,
    StudyManifestError,
    parse_run_name,
    read_manifest,
    run_name,
    write_manifest,
)
from eval.event_files import EventCache
from eval.study_progress import effective_state, find_studies, format_progress, studies_progress, study_progress


def fake_run(study: Path, name: str, epochs: int, status: str | None, max_epoch: int = 5,
             final: bool = False) -> None:
    run = study / name
    run.mkdir(parents=True)
    model, seed = parse_run_name(name)
    if status is not None:
        meta = {"model": model, "dataset": "synthetic", "seed": seed, "max_epoch": max_epoch, "status": status}
        if status == "finished":
            meta["epochs_done"] = epochs
        (run / "run.json").write_text(json.dumps(meta))
    if epochs:
        writer = SummaryWriter(log_dir=str(run))
        for epoch in range(1, epochs + 1):
            writer.add_scalar(TB_TAGS["train_loss"], 10.0 / epoch, epoch)
        writer.close()
    if final:
        (run / "weights").mkdir()
        (run / "weights" / "Final.pth").write_bytes(b"x")


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "st"
    manifest = StudyManifest(name="st", data="data/x", models=["cbam", "none"], seeds=[0, 1], executor="local")
    states = {("cbam", 0): "running", ("cbam", 1): "running", ("none", 0): "running", ("none", 1): "done"}
    for (model, seed), state in states.items():
        manifest.runs[run_name(model, seed)] = RunEntry(model=model, seed=seed, state=state, job_id=f"local:{seed}",
                                                        log=f"logs/{model}_s{seed}.log")
    root.mkdir()
    write_manifest(root, manifest)
    fake_run(root, "cbam_s0", 5, "finished", final=True)  # the launcher died before recording it: done
    fake_run(root, "cbam_s1", 2, "running")  # two epochs logged so far
    fake_run(root, "none_s0", 1, "failed")  # stopped on a NaN loss: failed
    return root  # none_s1: "done" in the manifest but no files (deleted): to train again


def test_states_follow_the_run_files_and_epochs_the_event_files(study: Path) -> None:
    progress = study_progress(study, cache=EventCache())
    table = progress.table.set_index("run")
    assert table["state"].to_dict() == {"cbam_s0": "done", "cbam_s1": "running", "none_s0": "failed",
                                        "none_s1": "pending"}
    assert table["epochs"].to_dict() == {"cbam_s0": 5, "cbam_s1": 2, "none_s0": 1, "none_s1": 0}
    assert progress.counts == {"pending": 1, "running": 1, "done": 1, "failed": 1} and not progress.complete
    text = format_progress(progress)
    assert "4 runs, 1 pending, 1 running, 1 done, 1 failed" in text.splitlines()[0]
    assert [line.split()[:3] for line in text.splitlines()[2:6]] == [
        ["cbam_s0", "done", "5/5"], ["cbam_s1", "running", "2/5"], ["none_s0", "failed", "1/5"],
        ["none_s1", "pending", "0"]]
    assert "failed: none_s0: see logs/none_s0.log" in text


def test_progress_refreshes_as_a_run_grows(study: Path) -> None:
    cache = EventCache()
    assert study_progress(study, cache=cache).table.set_index("run").loc["cbam_s1", "epochs"] == 2
    writer = SummaryWriter(log_dir=str(study / "cbam_s1"))
    writer.add_scalar(TB_TAGS["train_loss"], 1.0, 3)
    writer.close()
    assert study_progress(study, cache=cache).table.set_index("run").loc["cbam_s1", "epochs"] == 3


def test_manifest_round_trip_and_clear_errors(tmp_path: Path) -> None:
    manifest = StudyManifest(name="a", data="d", models=["cbam"], seeds=[3], executor="slurm",
                             runs={"cbam_s3": RunEntry(model="cbam", seed=3, job_id="7_0", command=["x"])})
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path / "study.json")
    assert again.to_json() == manifest.to_json() and again.runs["cbam_s3"].name == "cbam_s3"
    assert parse_run_name("eca_cbam_parallel_s12") == ("eca_cbam_parallel", 12) and parse_run_name("x") is None
    with pytest.raises(StudyManifestError, match="no study manifest"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(StudyManifestError, match="unreadable study manifest"):
        read_manifest(tmp_path)
    data = manifest.to_json()
    data["runs"]["cbam_s3"]["state"] = "exploded"
    (tmp_path / "study.json").write_text(json.dumps(data))
    with pytest.raises(StudyManifestError, match="unknown run states"):
        read_manifest(tmp_path)


def test_studies_found_under_the_roots_and_a_broken_one_is_a_warning(study: Path, tmp_path: Path) -> None:
    (tmp_path / "other" / "bad").mkdir(parents=True)
    (tmp_path / "other" / "bad" / "study.json").write_text("[]")
    found, warnings = studies_progress([tmp_path, tmp_path / "other", tmp_path / "missing"], cache=EventCache())
    assert [p.study_dir for p in found] == [study]  # found once though two roots hold it
    assert len(warnings) == 1 and "bad/study.json: unreadable study manifest" in warnings[0]
    assert find_studies([tmp_path / "missing"]) == ([], [])


def test_a_finished_run_whose_weights_were_moved_stays_done(tmp_path: Path) -> None:
    fake_run(tmp_path, "cbam_s0", 3, "finished", max_epoch=3)  # no weights/ (the demo ships them apart)
    assert effective_state("pending", tmp_path / "cbam_s0") == "done"
    fake_run(tmp_path, "cbam_s1", 1, "running")
    assert effective_state("done", tmp_path / "cbam_s1") == "pending"  # launcher said done, files say not
