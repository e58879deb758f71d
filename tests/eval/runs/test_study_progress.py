"""Study progress from study.json and the runs' files (states corrected by run.json, epochs from event files)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from core.lab.artifacts import TB_TAGS
from core.lab.log_tail import last_line_of, log_last_line
from core.lab.study_manifest import (
    RunEntry,
    StudyManifest,
    StudyManifestError,
    parse_run_name,
    read_manifest,
    run_name,
    write_manifest,
)
from eval.runs.cluster_states import _parse_states, cluster_states, job_outcome
from eval.runs.event_cache import EventCache
from eval.runs.study_progress import (
    effective_state,
    find_studies,
    format_progress,
    run_status,
    studies_progress,
    study_progress,
)


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


# SLURM runs


def slurm_study(root: Path) -> Path:
    """Five SLURM runs: queued, running, cancelled (squeue still holds it), died at start and gone, lost."""
    manifest = StudyManifest(name="sl", data="d", models=["cbam"], seeds=[0, 1, 2, 3, 4], executor="slurm")
    for seed in range(5):
        job = f"90_{seed}"
        manifest.runs[run_name("cbam", seed)] = RunEntry(
            model="cbam", seed=seed, state="pending", job_id=job, log=str(root / "logs" / f"cbam_s{seed}.log"),
            job_log=str(root / "slurm" / job / f"{job}_0_log.out"),
            job_result=str(root / "slurm" / job / f"{job}_0_result.pkl"))
    root.mkdir()
    write_manifest(root, manifest)
    fake_run(root, "cbam_s1", 1, "running")
    for seed, text in ((2, "epoch 1/2: train/loss_total 31.9\nslurmstepd: error: *** JOB 93 ON n1 CANCELLED AT "
                           "2026-01-01T00:00:00 ***\n"),
                       (3, "Traceback (most recent call last):\nModuleNotFoundError: No module named 'pkg_resources'"
                           "\nsrun: error: n1: task 0: Exited with exit code 1\n")):
        log = Path(manifest.runs[f"cbam_s{seed}"].job_log)
        log.parent.mkdir(parents=True)
        log.write_text(text)
    with open(manifest.runs["cbam_s3"].job_result, "wb") as handle:
        pickle.dump(("error", "Traceback\nModuleNotFoundError: No module named 'pkg_resources'\n"), handle)
    return root


SQUEUE = {"90_0": "PENDING", "90_1": "RUNNING", "90_2": "CANCELLED"}  # 90_3, 90_4: SLURM no longer has them


def test_slurm_runs_tell_the_truth_without_accounting(tmp_path: Path) -> None:
    study = slurm_study(tmp_path / "sl")
    asked: list[list[str]] = []
    progress = study_progress(study, cache=EventCache(), cluster=lambda ids: asked.append(list(ids)) or SQUEUE)
    assert asked == [[f"90_{s}" for s in range(5)]]  # one question for the whole study
    table = progress.table.set_index("run")
    assert table["state"].to_dict() == {"cbam_s0": "pending", "cbam_s1": "running", "cbam_s2": "failed",
                                        "cbam_s3": "failed", "cbam_s4": "failed"}  # never pending once gone
    assert table.loc["cbam_s2", "note"] == "slurm job 90_2 CANCELLED before the run finished"
    assert table.loc["cbam_s2", "last_line"].startswith("slurmstepd: error: *** JOB 93 ON n1 CANCELLED")
    assert table.loc["cbam_s3", "note"] == "slurm job 90_3 gone (SLURM no longer has it) before the run finished"
    assert table.loc["cbam_s3", "last_line"] == "ModuleNotFoundError: No module named 'pkg_resources'"
    assert table.loc["cbam_s3", "log"] == str(study / "slurm" / "90_3" / "90_3_0_log.out")
    assert table.loc["cbam_s4", "note"].endswith("before the run finished; no log written")
    assert table.loc["cbam_s4", "last_line"] is None
    text = format_progress(progress)
    assert "5 runs, 1 pending, 1 running, 0 done, 3 failed" in text.splitlines()[0]
    assert (f"failed: cbam_s3: see {study}/slurm/90_3/90_3_0_log.out (slurm job 90_3 gone (SLURM no longer has it) "
            "before the run finished); last line: ModuleNotFoundError: No module named 'pkg_resources'") in text

    # a run whose files say finished is done whatever SLURM says; one the trainer stopped is failed with why
    fake_run(study, "cbam_s4", 2, "finished", max_epoch=2)
    entry = read_manifest(study).runs["cbam_s4"]
    assert run_status(entry, study / "cbam_s4", {}).state == "done"
    meta = json.loads((study / "cbam_s1" / "run.json").read_text()) | {"status": "failed", "error": "loss is nan"}
    (study / "cbam_s1" / "run.json").write_text(json.dumps(meta))
    assert run_status(read_manifest(study).runs["cbam_s1"], study / "cbam_s1", SQUEUE).note.startswith("loss is nan")


def test_slurm_runs_when_the_cluster_cannot_be_asked(tmp_path: Path) -> None:
    study = slurm_study(tmp_path / "sl")
    table = study_progress(study, cache=EventCache(), cluster=lambda ids: None).table.set_index("run")
    # queued/running/cancelled/lost as last recorded (pending); the one that left its result file ended
    assert table["state"].to_dict() == {"cbam_s0": "pending", "cbam_s1": "pending", "cbam_s2": "pending",
                                        "cbam_s3": "failed", "cbam_s4": "pending"}
    assert table.loc["cbam_s3", "note"] == "slurm job 90_3 ended before the run finished"
    assert "squeue did not answer" in format_progress(study_progress(study, cluster=lambda ids: None))


def test_job_outcome_reads_plain_data_only(tmp_path: Path) -> None:
    path = tmp_path / "r.pkl"
    path.write_bytes(pickle.dumps(("success", 0)))
    assert job_outcome(path) == ("success", "")
    path.write_bytes(pickle.dumps(("error", "Traceback\n  File x\nRuntimeError: boom\n")))
    assert job_outcome(path) == ("error", "RuntimeError: boom")
    path.write_bytes(pickle.dumps(("success", Path("/x"))))  # a class: refused, never instantiated
    assert job_outcome(path) is None
    path.write_bytes(b"\x80\x04truncated")
    assert job_outcome(path) is None and job_outcome(tmp_path / "missing.pkl") is None and job_outcome(None) is None


def test_last_line_skips_srun_sign_off_and_reads_only_the_tail(tmp_path: Path) -> None:
    assert last_line_of("a\nRuntimeError: boom\n\nsrun: error: n1: task 0: Exited with exit code 1\n") == \
        "RuntimeError: boom"
    assert last_line_of("srun: error: only srun spoke\n") == "srun: error: only srun spoke"
    assert last_line_of("epoch 1/2:  50%|#    | 2/4\repoch 1/2: 100%|#####| 4/4\r\n") == "epoch 1/2: 100%|#####| 4/4"
    assert last_line_of("  \n") is None
    log = tmp_path / "big.log"
    log.write_text("x" * 100_000 + "\nthe end\n")
    assert log_last_line(log, tail_bytes=64) == "the end" and log_last_line(tmp_path / "none.log") is None


def test_squeue_and_sacct_answers_are_parsed_to_one_state_per_job() -> None:
    squeue = "4242_0|RUNNING\n4242_1|PENDING\n4243|CANCELLED\n"
    sacct = "4244_0|CANCELLED by 0\n4244_0.batch|CANCELLED\n4244_0.extern|COMPLETED\n4245|FAILED\n"
    assert _parse_states(squeue) == {"4242_0": "RUNNING", "4242_1": "PENDING", "4243": "CANCELLED"}
    assert _parse_states(sacct) == {"4244_0": "CANCELLED", "4245": "FAILED"}


def test_cluster_states_ask_squeue_then_sacct_for_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho \"$@\" > " + str(tmp_path / "squeue_args") +
                                    "\necho '7_0|RUNNING'\n")
    (bin_dir / "sacct").write_text("#!/bin/sh\necho \"$@\" > " + str(tmp_path / "sacct_args") +
                                   "\necho '7_1|TIMEOUT'\necho '9|COMPLETED'\n")
    for tool in ("squeue", "sacct"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert cluster_states(["7_0", "7_1", "7_2", "8"]) == {"7_0": "RUNNING", "7_1": "TIMEOUT"}
    assert "--states all" in (tmp_path / "squeue_args").read_text()  # ended jobs it still holds count too
    assert "--jobs 7,8" in (tmp_path / "squeue_args").read_text()
    assert "--jobs 7,8" in (tmp_path / "sacct_args").read_text()  # only what squeue no longer holds
    (bin_dir / "sacct").unlink()  # no accounting: squeue's answer alone
    assert cluster_states(["7_0", "7_1"]) == {"7_0": "RUNNING"}
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\n"
                                    "exit 1\n")
    assert cluster_states(["7_0"]) == {}  # every id unknown: an answer (they are gone), not a failure
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n")
    assert cluster_states(["7_0"]) is None
    (bin_dir / "squeue").unlink()
    assert cluster_states(["7_0"]) is None
