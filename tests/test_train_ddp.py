"""``torchrun --nproc_per_node 2 -m train`` on CPU (gloo): completes, rank 0 alone writes, and the global
batch split gives the same step count as a single-process run.

7 training images with a global batch of 4 is the uneven case: a sampler that padded ranks instead of
dropping the remainder would give DDP 2 steps per epoch against the single process's 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.checkpoint import load_checkpoint, read_checkpoint
from core.data.synth import generate_dataset
from train.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("ddp_data") / "synth", num_train=8, num_val=2, seed=1)


def cli_args(data: Path, out: Path, run_name: str) -> list[str]:
    return [
        "--network", "none", "--data", str(data), "--out", str(out), "--run-name", run_name,
        "--max-epoch", "2", "--batch-size", "4", "--max-train-images", "7", "--img-size", "128",
        "--workers", "0", "--warmup-epochs", "1", "--eval-every", "2", "--eval-size", "128",
        "--no-progress", "--device", "cpu",
    ]  # fmt: skip


def step_series(run_dir: Path) -> list[int]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [e.step for e in acc.Scalars("train_step/loss_total")]


@pytest.mark.slow
def test_two_process_gloo_run_matches_single_process_step_count(synth_data: Path, tmp_path: Path) -> None:
    assert main(cli_args(synth_data, tmp_path, "single")) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("FEATHERFACE_DEVICE", None)
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "train",
           *cli_args(synth_data, tmp_path, "ddp")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert step_series(ddp) == step_series(single) == [0, 1]  # 1 step per epoch: floor(7 / 4)
    last_single = read_checkpoint(single / "weights" / "last.pth")
    last_ddp = read_checkpoint(ddp / "weights" / "last.pth")
    assert last_ddp["global_step"] == last_single["global_step"] == 2
    assert last_ddp["steps_per_epoch"] == last_single["steps_per_epoch"] == 1
    for name in ("last", "best", "Final"):
        load_checkpoint(ddp / "weights" / f"{name}.pth", expected_name="none")
    assert len(list(ddp.glob("events.out.tfevents.*"))) == 1, "only rank 0 may write TensorBoard events"
    meta = json.loads((ddp / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["batch_size"] == 4 and meta["status"] == "finished"
    assert proc.stderr.count("done: ") == 1, "only rank 0 reports"
