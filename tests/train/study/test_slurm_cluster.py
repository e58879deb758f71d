"""train.study.run against a real SLURM cluster (marker ``slurm``; skipped with a reason where ``sinfo`` does not
answer; CI builds a one-node cluster with ../shared/tools/slurm-single-node.sh, which has no accounting: no sacct).

A 2-model x 1-seed study runs through SLURM; one run is cancelled with ``scancel`` in the middle of its second
epoch, ``--status`` reports it failed with its log's last line, the rerun resubmits that run only, and it resumes
from its epoch-1 checkpoint: both end done with every logged step once. A CPU-only study (``--gpus-per-run 0``)
runs on the same cluster, and a job that dies at start is failed, with its reason, in one ``--status`` call.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import train.study.run as study
from core.checkpoint import read_checkpoint
from core.lab.study_manifest import manifest_path, read_manifest
from core.synth.generate import generate_dataset
from eval.runs.cluster_states import squeue_states
from eval.runs.study_progress import SLURM_RUNNING, SLURM_WAITING, effective_state, study_progress
from tests.train.study.test_study import step_events

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[3]
EPOCHS, STEPS = 2, 8  # 16 images / batch 2 at 128 px: ~1 s an epoch, time to cancel one in its middle
T = TypeVar("T")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("slurm_data") / "synth", num_train=16, num_val=2, seed=3,
                            min_size=64, max_size=96)


@pytest.fixture
def studies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Runs from the repository (the jobs' working directory); cancels the jobs of runs a failed test left
    unfinished (a finished run's job may still be exiting: it is left to end on its own)."""
    monkeypatch.chdir(REPO)
    folders: list[Path] = []
    yield folders
    ids = [str(e.job_id) for folder in folders if manifest_path(folder).is_file()
           for name, e in read_manifest(folder).runs.items()
           if e.job_id and effective_state(e.state, folder / name) != "done"]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


def study_args(data: Path, study_dir: Path, *extra: str, models: tuple[str, ...] = ("cbam", "none"),
               epochs: int = EPOCHS) -> list[str]:
    return ["--models", *models, "--seeds", "0", "--data", str(data), "--out", str(study_dir.parent),
            "--name", study_dir.name, "--executor", "slurm", "--no-progress", "--max-epoch", str(epochs),
            "--batch-size", "2", "--img-size", "128", "--eval-every", "0", "--workers", "0", "--device", "cpu",
            "--warmup-epochs", "1", *extra]


def wait_for(condition: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            queue = subprocess.run(["squeue", "--states", "all"], capture_output=True, text=True).stdout
            pytest.fail(f"{what} within {timeout} s; squeue:\n{queue}")
        time.sleep(every)
    return value


def ended(job_id: str) -> bool:
    """SLURM holds the job as ended (or no longer has it): no longer queued, running or completing."""
    states = squeue_states([job_id])
    return states is not None and states.get(job_id) not in SLURM_WAITING | SLURM_RUNNING


def sbatch_lines(study_dir: Path) -> list[list[str]]:
    """The #SBATCH lines of each submission script of the study, oldest first."""
    scripts = sorted(study_dir.glob("slurm/*/*_submission.sh"), key=lambda p: p.stat().st_mtime_ns)
    return [[ln for ln in p.read_text().splitlines() if ln.startswith("#SBATCH")] for p in scripts]


def status_of(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, str], str]:
    """One ``--status`` call: each run's state from the table, and the whole text."""
    capsys.readouterr()
    assert study.main(["--status", str(study_dir)]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()[2:] if line and not line.startswith(("failed:", "warning:"))]
    return {row[0]: row[1] for row in rows if len(row) >= 2}, text


def test_study_through_slurm_cancelled_mid_epoch_is_failed_and_the_rerun_resumes_only_it(data, tmp_path, studies,
                                                                                          capsys):
    started = time.monotonic()
    study_dir = tmp_path / "runs" / "st"
    studies.append(study_dir)
    args = study_args(data, study_dir)
    assert study.main(args) == 0
    first = read_manifest(study_dir)
    array = str(first.runs["cbam_s0"].job_id).split("_")[0]
    assert {n: e.job_id for n, e in first.runs.items()} == {"cbam_s0": f"{array}_0", "none_s0": f"{array}_1"}
    assert "#SBATCH --gpus-per-node=1" in sbatch_lines(study_dir)[0]  # the gres path: one GPU per run

    def one_epoch_in() -> str | None:  # the first run to checkpoint epoch 1 is in its second epoch now
        for name in first.runs:
            weights = study_dir / name / "weights"
            if (weights / "last.pth").is_file() and not (weights / "Final.pth").exists():
                return name
        return None

    victim = wait_for(one_epoch_in, 300, "no run checkpointed its first epoch")
    other = next(n for n in first.runs if n != victim)
    job = str(first.runs[victim].job_id)
    subprocess.run(["scancel", job], check=True, timeout=60)
    wait_for(lambda: ended(job), 120, f"job {job} did not end after scancel")
    weights = study_dir / victim / "weights"
    assert not (weights / "Final.pth").exists(), "cancelled too late: the run finished its second epoch"
    assert read_checkpoint(weights / "last.pth")["global_step"] == STEPS  # epoch 1 checkpointed, epoch 2 lost

    states, text = status_of(study_dir, capsys)
    assert states[victim] == "failed" and states[other] in ("pending", "running", "done"), text
    failed_line = next(line for line in text.splitlines() if line.startswith(f"failed: {victim}:"))
    job_log = study_dir / "slurm" / job / f"{job}_0_log.out"
    assert failed_line.startswith(f"failed: {victim}: see {job_log} (slurm job {job} CANCELLED before the run "
                                  "finished); last line: "), failed_line
    last = failed_line.split("; last line: ", 1)[1]
    assert "python -m train killed by SIGTERM" in last or f"JOB {job.split('_')[0]}" in last, last
    assert read_manifest(study_dir).runs[victim].state == "failed"  # --status saved what it found

    capsys.readouterr()
    assert study.main(args) == 0  # the rerun: the cancelled run again, nothing else
    err = capsys.readouterr().err
    assert "submitted 1 runs" in err and f"{victim}=" in err and f"{other}=" not in err, err
    again = read_manifest(study_dir)
    assert again.runs[victim].attempts == 2 and again.runs[victim].job_id != job
    assert again.runs[other].attempts == 1 and again.runs[other].job_id == first.runs[other].job_id
    assert not any(ln.startswith("#SBATCH --array") for ln in sbatch_lines(study_dir)[-1])  # one job, not an array

    wait_for(lambda: study_progress(study_dir).complete, 600, "the study did not complete", every=1.0)
    states, text = status_of(study_dir, capsys)
    assert states == {victim: "done", other: "done"} and "2 runs, 0 pending, 0 running, 2 done, 0 failed" in text
    for name in (victim, other):
        run_dir = study_dir / name
        meta = json.loads((run_dir / "run.json").read_text())
        assert meta["status"] == "finished" and meta["epochs_done"] == EPOCHS, name
        assert read_checkpoint(run_dir / "weights" / "Final.pth")["global_step"] == EPOCHS * STEPS
        assert step_events(run_dir) == list(range(EPOCHS * STEPS)), name  # every logged step once
        assert [r["global_step"] for r in meta.get("resumes", [])] == ([STEPS] if name == victim else []), name
    final_jobs = [str(e.job_id) for e in again.runs.values()]
    wait_for(lambda: all(ended(j) for j in final_jobs), 120, "the jobs did not end after their runs finished")
    assert {j: squeue_states(final_jobs).get(j) for j in final_jobs} == dict.fromkeys(final_jobs, "COMPLETED")
    log = Path(str(again.runs[victim].log)).read_text()
    assert f"resuming {study_dir / victim} from {weights / 'last.pth'}: epoch 1 done, global step {STEPS}" in log
    print(f"\nslurm cancel/rerun study: {time.monotonic() - started:.1f} s wall")


def test_cpu_only_study_runs_and_a_job_dying_at_start_is_failed_in_one_status_call(data, tmp_path, studies,
                                                                                   capsys):
    started = time.monotonic()
    cpu, broken = tmp_path / "runs" / "cpu", tmp_path / "runs" / "broken"
    studies += [cpu, broken]
    assert study.main(study_args(data, cpu, "--gpus-per-run", "0", "--cpus-per-run", "1", "--mem", "1G",
                                 "--slurm-extra", "comment=featherface-cpu", models=("none",), epochs=1)) == 0
    # a node that cannot see the repository (the job starts elsewhere): it dies before training starts
    assert study.main(study_args(data, broken, "--gpus-per-run", "0", "--slurm-extra", "chdir=/nonexistent",
                                 models=("none",), epochs=1)) == 0
    lines = sbatch_lines(cpu)[0]
    assert not [ln for ln in lines if "gpu" in ln or "gres" in ln], lines  # a CPU cluster: no gres asked
    assert {"#SBATCH --cpus-per-task=1", "#SBATCH --mem=1G", "#SBATCH --comment=featherface-cpu"} <= set(lines)

    job = str(read_manifest(broken).runs["none_s0"].job_id)
    wait_for(lambda: ended(job), 300, f"job {job} did not end")
    states, text = status_of(broken, capsys)
    assert states == {"none_s0": "failed"}, text
    job_log = broken / "slurm" / job / f"{job}_0_log.out"
    assert (f"failed: none_s0: see {job_log} (slurm job {job} FAILED before the run finished); last line: "
            "ModuleNotFoundError: No module named") in text, text

    wait_for(lambda: study_progress(cpu).complete, 300, "the CPU-only study did not complete", every=0.5)
    states, _ = status_of(cpu, capsys)
    assert states == {"none_s0": "done"}
    cpu_job = str(read_manifest(cpu).runs["none_s0"].job_id)
    wait_for(lambda: ended(cpu_job), 120, f"job {cpu_job} did not end after its run finished")
    assert squeue_states([cpu_job]) == {cpu_job: "COMPLETED"}
    print(f"\nslurm CPU-only + dies-at-start: {time.monotonic() - started:.1f} s wall")
