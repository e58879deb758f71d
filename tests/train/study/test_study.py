"""train.study.run: a local 2 x 2 study killed mid-run and rerun trains nothing twice; failures are reported and do
not stop the others; the SLURM path submits one job array through submitit to stub sbatch/squeue/sacct scripts
(the paths a one-node cluster cannot show: requeue, accounting, a job lost with its node, a missing tool;
tests/train/study/test_slurm_cluster.py runs the real engine)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import submitit

import train.study.run as study
from core.checkpoint import read_checkpoint
from core.lab.study_manifest import read_manifest
from core.synth.generate import generate_dataset
from eval.runs.convergence import load_convergence
from eval.runs.event_cache import EventCache
from tests.conftest import exit_status
from train.study.job import RunJob

REPO = Path(__file__).resolve().parents[3]
EPOCHS, STEPS = 3, 4  # 8 images / batch 2


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("study_data") / "synth", num_train=8, num_val=2, seed=3,
                            min_size=64, max_size=96)


def study_cmd(data: Path, out: Path, *extra: str, models: tuple[str, ...] = ("cbam", "none"),
              epochs: int = EPOCHS) -> list[str]:
    return ["--models", *models, "--seeds", "0", "1", "--data", str(data), "--out", str(out), "--name", "st",
            "--executor", "local", "--threads-per-run", "1", "--no-progress", "--max-epoch", str(epochs),
            "--batch-size", "2", "--img-size", "64", "--eval-every", "0", "--workers", "0", "--device", "cpu",
            "--warmup-epochs", "1", *extra]


def step_events(run_dir: Path) -> list[int]:
    """The train_step indices TensorBoard shows for a run (steps voided by a resumed writer removed)."""
    data = load_convergence([run_dir.parent], cache=EventCache())
    s = data.scalars
    name = f"{run_dir.parent.name}/{run_dir.name}"  # eval.runs.convergence.run_names: <root>/<run folder>
    return sorted(s[(s["run"] == name) & (s["tag"] == "train_step/loss_total")]["step"].tolist())


@pytest.mark.slow
def test_local_study_killed_and_rerun_ends_done_without_training_anything_twice(tiny_data, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "train.study", *study_cmd(tiny_data, out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = out / "st" / "cbam_s1"
    deadline = time.monotonic() + 600
    while not (second / "weights" / "last.pth").is_file():  # run 2 of 4 has finished one epoch of three
        assert proc.poll() is None and time.monotonic() < deadline, "the study ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the runs must die with it (PDEATHSIG)
    proc.wait()
    time.sleep(1.0)
    first = out / "st" / "cbam_s0"
    assert (first / "weights" / "Final.pth").is_file()
    assert not (second / "weights" / "Final.pth").exists(), "killed too late to test the resume"
    killed = read_manifest(out / "st")
    assert killed.runs["cbam_s1"].state == "running" and killed.runs["none_s0"].state == "pending"
    before = (first / "weights" / "Final.pth").stat().st_mtime_ns, sorted(first.glob("events.out.*"))
    killed_at = read_checkpoint(second / "weights" / "last.pth")["global_step"]
    time.sleep(1.0)  # the killed run is gone: its checkpoint no longer moves
    assert read_checkpoint(second / "weights" / "last.pth")["global_step"] == killed_at

    assert study.main(study_cmd(tiny_data, out)) == 0

    manifest = read_manifest(out / "st")
    assert {n: e.state for n, e in manifest.runs.items()} == dict.fromkeys(
        ["cbam_s0", "cbam_s1", "none_s0", "none_s1"], "done")
    assert {n: e.attempts for n, e in manifest.runs.items()} == {"cbam_s0": 1, "cbam_s1": 2, "none_s0": 1,
                                                                 "none_s1": 1}
    assert ((first / "weights" / "Final.pth").stat().st_mtime_ns, sorted(first.glob("events.out.*"))) == before
    for name in manifest.runs:
        run_dir = out / "st" / name
        assert read_checkpoint(run_dir / "weights" / "Final.pth")["global_step"] == EPOCHS * STEPS
        assert step_events(run_dir) == list(range(EPOCHS * STEPS)), name  # every step once
        resumes = json.loads((run_dir / "run.json").read_text()).get("resumes", [])
        assert len(resumes) == (1 if name == "cbam_s1" else 0), name
    assert json.loads((second / "run.json").read_text())["resumes"][0]["global_step"] == killed_at
    assert killed_at % STEPS == 0 and killed_at >= STEPS  # resumed at an epoch boundary, from last.pth


@pytest.mark.slow
def test_failed_run_is_reported_with_its_log_and_the_others_go_on(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    broken = out / "st" / "cbam_s0" / "weights" / "last.pth"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")  # --resume auto will refuse it: exit 2
    assert study.main(study_cmd(tiny_data, out, models=("cbam",), epochs=1)) == 1
    err = capsys.readouterr()
    manifest = read_manifest(out / "st")
    failed, ok = manifest.runs["cbam_s0"], manifest.runs["cbam_s1"]
    assert failed.state == "failed" and failed.returncode == 2 and ok.state == "done"
    assert f"FAILED cbam_s0 (exit code 2): see {failed.log}" in err.err
    assert "not a checkpoint" in Path(failed.log).read_text() or "checkpoint" in Path(failed.log).read_text()
    assert f"failed: cbam_s0: see {failed.log}" in err.out
    assert study.main(["--status", str(out / "st")]) == 0
    assert "1 done, 1 failed" in capsys.readouterr().out.splitlines()[0].replace("0 pending, 0 running, ", "")


def test_bad_arguments_stop_before_anything_runs(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    assert study.main(study_cmd(tiny_data, out, "--no-such-flag")) == 2
    assert "rejects the train flags" in capsys.readouterr().err
    assert study.main(study_cmd(tiny_data, out, "--seed", "4")) == 2
    assert "set by the study" in capsys.readouterr().err
    assert not (out / "st").exists()
    assert exit_status(study.main, ["--status", str(tmp_path / "nothing")]) == 2
    assert "argument --status: " in (err := capsys.readouterr().err) and "nothing': file or folder not found" in err
    (tmp_path / "not a study").mkdir()
    (tmp_path / "not a study" / "notes.txt").write_text("x")
    assert study.main(["--status", str(tmp_path / "not a study")]) == 2
    assert "no study manifest" in capsys.readouterr().err


# SLURM through stub scripts


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch records the script and answers job 4242, 4243, ...; squeue prints <record>/squeue.txt (else, as
    the real one for job ids it does not hold, "Invalid job id specified", exit 1); sacct prints
    <record>/sacct.txt (else, as a cluster without accounting, exit 1); srun (which submitit looks for to
    tell it is on a cluster) is never called."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    _script(bin_dir / "sbatch", f"""n=$(ls {record} | grep -c '^submit_')
cp "$1" {record}/submit_$n.sh
echo "Submitted batch job $((4242 + n))"
""")
    _script(bin_dir / "squeue", f"""[ -f {record}/squeue.txt ] && exec cat {record}/squeue.txt
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
""")
    _script(bin_dir / "sacct", f"""[ -f {record}/sacct.txt ] && exec cat {record}/sacct.txt
echo "Slurm accounting storage is disabled" >&2; exit 1
""")
    _script(bin_dir / "srun", "exit 1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_slurm_submits_one_job_array_and_resubmits_only_what_ended_badly(tiny_data, tmp_path, fake_slurm, capsys):
    out = tmp_path / "runs"
    args = ["--models", "cbam", "eca_cbam_parallel", "--seeds", "0", "1", "--data", str(tiny_data), "--out",
            str(out), "--name", "st", "--executor", "auto", "--slurm-partition", "gpu", "--gpus-per-run", "2",
            "--timeout-min", "90", "--cpus-per-run", "8", "--max-epoch", "5"]
    assert study.main(args) == 0

    script = (fake_slurm / "submit_0.sh").read_text()
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --time=90", "#SBATCH --cpus-per-task=8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --job-name=featherface_st"):
        assert line in script.splitlines(), line
    assert f"{sys.executable} -u -m submitit.core._submit" in script  # the job's Python is the study's own
    assert f"[ -x {sys.executable} ] ||" in script  # a node without it says so before anything starts
    manifest = read_manifest(out / "st")
    assert manifest.executor == "slurm"
    names = ["cbam_s0", "cbam_s1", "eca_cbam_parallel_s0", "eca_cbam_parallel_s1"]
    assert {n: (e.state, e.job_id) for n, e in manifest.runs.items()} == {
        n: ("pending", f"4242_{i}") for i, n in enumerate(names)}
    for name, entry in manifest.runs.items():
        job = submitit.SlurmJob(folder=out / "st" / "slurm" / "%j", job_id=entry.job_id)
        command = job.submission().function.command  # what the array task will run
        assert command == entry.command
        assert command[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                               "2", "-m"] and command[7] == "train"
        flags = dict(zip(command[8::2], command[9::2], strict=False))
        assert flags["--network"] == entry.model and flags["--seed"] == str(entry.seed)
        assert flags["--run-name"] == name and flags["--resume"] == "auto" and flags["--max-epoch"] == "5"
        assert flags["--out"] == str(out / "st") and flags["--data"] == str(tiny_data)

    # cbam_s0 runs, _s1 still queued (squeue); cbam_s1 failed, eca_cbam_parallel_s0 finished (accounting; its
    # files say so too).
    done = out / "st" / "eca_cbam_parallel_s0"
    (done / "weights").mkdir(parents=True)
    (done / "weights" / "Final.pth").write_bytes(b"x")
    (done / "run.json").write_text(json.dumps({"model": "eca_cbam_parallel", "dataset": "synthetic",
                                               "status": "finished", "epochs_done": 5, "max_epoch": 5}))
    (fake_slurm / "squeue.txt").write_text("4242_0|RUNNING\n4242_3|PENDING\n")
    (fake_slurm / "sacct.txt").write_text("4242_1|FAILED\n4242_1.batch|FAILED\n4242_2|COMPLETED\n")
    capsys.readouterr()
    assert study.main(["--status", str(out / "st")]) == 0
    status = capsys.readouterr().out
    assert "1 pending, 1 running, 1 done, 1 failed" in status
    rows = {line.split()[0]: line.split()[1:] for line in status.splitlines()[2:6]}
    assert rows == {"cbam_s0": ["running", "0", "4242_0"], "cbam_s1": ["failed", "0", "4242_1"],
                    "eca_cbam_parallel_s0": ["done", "5/5", "4242_2"],
                    "eca_cbam_parallel_s1": ["pending", "0", "4242_3"]}

    assert study.main(args) == 0
    second = (fake_slurm / "submit_1.sh").read_text()
    assert "--array" not in second and "#SBATCH --gpus-per-node=2" in second  # only cbam_s1 went again
    after = read_manifest(out / "st")
    assert after.runs["cbam_s1"].job_id == "4243" and after.runs["cbam_s1"].attempts == 2
    assert after.runs["cbam_s1"].state == "pending"
    assert [after.runs[n].job_id for n in ("cbam_s0", "eca_cbam_parallel_s0", "eca_cbam_parallel_s1")] == [
        "4242_0", "4242_2", "4242_3"]
    assert not (fake_slurm / "submit_2.sh").exists()


def test_run_job_appends_to_its_log_fails_loudly_and_requeues_itself(tmp_path, monkeypatch):
    log = tmp_path / "logs" / "a.log"
    threads = "import os; print('trained with', os.environ['OMP_NUM_THREADS'], 'threads')"
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # the login shell's: the job's CPUs win
    ok = RunJob([sys.executable, "-c", threads], str(tmp_path), str(log))
    assert ok() == 0 and "trained with 3 threads" in log.read_text()
    assert RunJob([sys.executable, "-c", threads], str(tmp_path), str(log), threads=2)() == 0
    assert "trained with 2 threads" in log.read_text().splitlines()[-1]
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert ok() == 0 and "trained with 1 threads" in log.read_text().splitlines()[-1]  # no --cpus-per-run: 1 CPU
    bad = RunJob([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], str(tmp_path), str(log))
    with pytest.raises(RuntimeError, match=f"python -m train exit code 3; last line of {log}: boom$"):
        bad()
    killed = RunJob([sys.executable, "-c", "import os, signal; print('x'); os.kill(os.getpid(), 15)"],
                          str(tmp_path), str(log))
    with pytest.raises(RuntimeError, match="python -m train killed by SIGTERM; last line"):
        killed()
    assert log.read_text().count("== ") == 5 and "boom" in log.read_text()
    again = ok.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function.command == ok.command


@pytest.mark.slow
def test_then_evaluate_writes_one_row_per_run_and_the_conclusion(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    extra = ("--then-evaluate", "--eval-args", "--rounds 2 --warmup 1 --size 64 64 --no-figures --threads 1")
    assert study.main(study_cmd(tiny_data, out, *extra, models=("cbam",), epochs=1)) == 0
    table = pd.read_csv(out / "st" / "results" / "comparison_table.csv")
    assert sorted(table["seed"]) == [0, 1] and set(table["model"]) == {"cbam"}
    assert all("/st/cbam_s" in w and w.endswith("weights/Final.pth") for w in table["weights"])
    conclusion = (out / "st" / "conclusion.md").read_text()
    assert "Synthetic" in conclusion or "synthetic" in conclusion
    evaluation = read_manifest(out / "st").evaluation
    assert evaluation["returncode"] == 0 and evaluation["conclusion_returncode"] == 0


def test_job_runs_through_submitit_where_pkg_resources_does_not_exist(tmp_path):
    """The job side of submitit (``python -m submitit.core._submit``) unpickles and runs a RunJob with
    pkg_resources made unimportable: setuptools >= 81 removed it, and submitit 1.5.3 imported it in every job."""
    blocker = tmp_path / "no_pkg_resources"
    blocker.mkdir()
    (blocker / "pkg_resources.py").write_text("raise ImportError('pkg_resources is gone (setuptools >= 81)')\n")
    folder = tmp_path / "jobs"
    log = tmp_path / "run.log"
    job = submitit.helpers.DelayedSubmission(RunJob([sys.executable, "-c", "print('trained')"], str(REPO),
                                                          str(log)))
    paths = submitit.core.utils.JobPaths(folder / "%j", job_id="7_0")
    paths.folder.mkdir(parents=True)
    job.dump(paths.submitted_pickle)
    env = dict(os.environ, SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="8", SLURM_ARRAY_JOB_ID="7",
               SLURM_ARRAY_TASK_ID="0", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NTASKS="1", SLURM_NNODES="1",
               SLURM_NODEID="0", SLURM_JOB_NODELIST="here",
               PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]))
    proc = subprocess.run([sys.executable, "-u", "-m", "submitit.core._submit", str(folder / "%j")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(paths.result_pickle, "rb") as handle:
        assert pickle.load(handle) == ("success", 0)
    assert "trained" in log.read_text() and "slurm job 7_0 on" in log.read_text()
    check = subprocess.run([sys.executable, "-c", "import pkg_resources"], env=env, capture_output=True, text=True)
    assert "pkg_resources is gone" in check.stderr  # the blocker did block


def slurm_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--models", "cbam", "eca_cbam_parallel", "--seeds", "0", "1", "--data", str(data), "--out", str(out),
            "--name", "st", "--executor", "slurm", "--max-epoch", "5", *extra]


def test_cpu_cluster_options_reach_sbatch_and_bad_ones_stop_before_anything_is_written(tiny_data, tmp_path,
                                                                                       fake_slurm, capsys):
    out = tmp_path / "runs"
    for bad, message in ((("--slurm-extra", "time=5"), "the study sets --time itself; use --timeout-min"),
                         (("--slurm-extra", "gres=gpu:2"), "the study sets --gres itself; use --gpus-per-run"),
                         (("--slurm-extra", "=lab"), "expected KEY=VALUE"),
                         (("--slurm-extra", "account="), "expected KEY=VALUE"),
                         (("--mem", "lots"), "expected SLURM's syntax"),
                         (("--gpus-per-run", "-1"), "--gpus-per-run >= 0")):
        assert study.main(slurm_args(tiny_data, out, *bad)) == 2, bad
        assert message in capsys.readouterr().err, bad
    assert not out.exists() and not list(fake_slurm.iterdir())

    assert study.main(slurm_args(tiny_data, out, "--gpus-per-run", "0", "--cpus-per-run", "4", "--mem", "12G",
                                 "--slurm-extra", "account=lab", "--slurm-extra", "qos=high",
                                 "--slurm-extra", "constraint=avx512&ib", "--slurm-extra", "exclusive")) == 0
    lines = [ln for ln in (fake_slurm / "submit_0.sh").read_text().splitlines() if ln.startswith("#SBATCH")]
    assert not [ln for ln in lines if "gpu" in ln or "gres" in ln], lines  # a CPU cluster: no gres at all
    assert {"#SBATCH --cpus-per-task=4", "#SBATCH --mem=12G", "#SBATCH --account=lab", "#SBATCH --qos=high",
            "#SBATCH --constraint='avx512&ib'", "#SBATCH --exclusive"} <= set(lines)
    command = read_manifest(out / "st").runs["cbam_s0"].command
    assert command[:3] == [sys.executable, "-m", "train"]  # one process, no torchrun

    assert study.main(["--models", "cbam", "--data", str(tiny_data), "--out", str(out), "--name", "mem",
                       "--executor", "slurm", "--mem-gb", "3"]) == 0
    assert "#SBATCH --mem=3G" in (fake_slurm / "submit_1.sh").read_text().splitlines()


def test_executor_slurm_without_its_tools_stops_in_one_line_before_anything_is_written(tiny_data, tmp_path,
                                                                                       monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "sbatch", "exit 1\n")  # sbatch alone: squeue and srun missing
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "runs"
    assert study.main(slurm_args(tiny_data, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs sbatch, squeue, srun on PATH (squeue, srun not found)" in err
    assert "--executor local" in err and not out.exists()
    args = [a if a != "slurm" else "auto" for a in slurm_args(tiny_data, out)]
    parsed, extra = study.build_parser().parse_known_args(args)
    assert study.make_plan(parsed, extra).executor == "local"  # auto: slurm only where all its tools are


def test_without_accounting_jobs_slurm_no_longer_has_are_failed_with_their_log_and_only_they_go_again(
        tiny_data, tmp_path, fake_slurm, capsys):
    """The real one-node cluster has no sacct: squeue, submitit's files and run.json must tell the truth."""
    out = tmp_path / "runs"
    assert study.main(slurm_args(tiny_data, out)) == 0
    manifest = read_manifest(out / "st")
    names = ["cbam_s0", "cbam_s1", "eca_cbam_parallel_s0", "eca_cbam_parallel_s1"]
    assert [manifest.runs[n].job_id for n in names] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    # 4242_0 runs, 4242_1 is queued; 4242_2 died at start (its job log and result say why); 4242_3 vanished
    # with its node: SLURM no longer has either, and no accounting can say what became of them.
    (fake_slurm / "squeue.txt").write_text("4242_0|RUNNING\n4242_1|PENDING\n")
    died = manifest.runs["eca_cbam_parallel_s0"]
    assert died.job_log == str(out / "st" / "slurm" / "4242_2" / "4242_2_0_log.out")
    Path(died.job_log).parent.mkdir(parents=True, exist_ok=True)
    Path(died.job_log).write_text("submitit INFO - Starting\nTraceback (most recent call last):\n"
                                  "ModuleNotFoundError: No module named 'pkg_resources'\n"
                                  "srun: error: node7: task 0: Exited with exit code 1\n")
    with open(str(died.job_result), "wb") as handle:
        pickle.dump(("error", "Traceback ...\nModuleNotFoundError: No module named 'pkg_resources'\n"), handle)
    capsys.readouterr()
    assert study.main(["--status", str(out / "st")]) == 0
    status = capsys.readouterr().out
    assert "4 runs, 1 pending, 1 running, 0 done, 2 failed" in status
    rows = {line.split()[0]: line.split()[1] for line in status.splitlines()[2:6]}
    assert rows == {"cbam_s0": "running", "cbam_s1": "pending", "eca_cbam_parallel_s0": "failed",
                    "eca_cbam_parallel_s1": "failed"}
    assert (f"failed: eca_cbam_parallel_s0: see {died.job_log} (slurm job 4242_2 gone (SLURM no longer has it) "
            "before the run finished); last line: ModuleNotFoundError: No module named 'pkg_resources'") in status
    lost = manifest.runs["eca_cbam_parallel_s1"]
    assert (f"failed: eca_cbam_parallel_s1: see {lost.job_log} (slurm job 4242_3 gone (SLURM no longer has it) "
            "before the run finished; no log written)\n") in status  # nothing of it left: no last line to show
    assert read_manifest(out / "st").runs["eca_cbam_parallel_s1"].state == "failed"  # saved by --status

    capsys.readouterr()
    assert study.main(slurm_args(tiny_data, out)) == 0
    assert "#SBATCH --array=0-1%2" in (fake_slurm / "submit_1.sh").read_text().splitlines()  # exactly those two
    after = read_manifest(out / "st")
    assert [after.runs[n].job_id for n in names] == ["4242_0", "4242_1", "4243_0", "4243_1"]
    assert [after.runs[n].attempts for n in names] == [1, 1, 2, 2]
    assert [after.runs[n].state for n in names] == ["running", "pending", "pending", "pending"]
    assert after.runs["eca_cbam_parallel_s0"].job_log.endswith("4243_0_0_log.out")

    # the controller does not answer: the runs stay as last recorded, and nothing is submitted twice
    _script(fake_slurm.parent / "bin" / "squeue",
            "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1\n")
    capsys.readouterr()
    assert study.main(["--status", str(out / "st")]) == 0
    status = capsys.readouterr().out
    assert "4 runs, 3 pending, 1 running, 0 done, 0 failed" in status
    assert ("warning: squeue did not answer (no cluster reachable from here?): 4 SLURM runs (cbam_s0, cbam_s1, "
            "eca_cbam_parallel_s0, eca_cbam_parallel_s1) shown as last recorded") in status
    assert study.main(slurm_args(tiny_data, out)) == 0
    assert "squeue did not answer: 4 runs with a job id are taken as queued or running" in capsys.readouterr().err
    assert not (fake_slurm / "submit_2.sh").exists()
