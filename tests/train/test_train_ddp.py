"""``torchrun --nproc_per_node 2 -m train`` on CPU (gloo): completes, rank 0 alone writes, and the global
batch split gives the same step count as a single-process run; ``--resume auto`` is decided by rank 0 and
works when the other rank cannot see the checkpoint.

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
from core.synth.generate import generate_dataset
from train.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
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


def _one_step_worker(rank: int, port: int, data: str, out: str, sync: bool, result_dir: str) -> None:
    """One rank of a 2-process gloo group: the real Trainer does one optimiser step on its own shard
    of the data (the DistributedSampler gives each rank different images); parameters are saved."""
    import torch

    from train import distributed as dist_helpers
    from train.cli import build_parser, config_from_args
    from train.trainer import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")  # fmt: skip
    torch.set_num_threads(1)
    args = cli_args(Path(data), Path(out), "sync" if sync else "nosync")
    args[args.index("--max-epoch") + 1] = "1"
    args[args.index("--max-train-images") + 1] = "4"
    cfg = config_from_args(build_parser().parse_args([*args, "--eval-every", "0"]))
    ctx = dist_helpers.setup("cpu")
    try:
        trainer = Trainer(cfg, ctx)
        trainer.val_loader = None  # only the optimiser step matters here
        if sync:
            trainer.run()
        else:
            with trainer.model.no_sync():
                trainer.run()
        assert trainer.global_step == 1
        params = {name: p.detach().clone() for name, p in trainer.net.named_parameters()}
        torch.save(params, Path(result_dir) / f"{'sync' if sync else 'nosync'}_rank{rank}.pt")
    finally:
        dist_helpers.cleanup(ctx)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ddp_step_synchronises_gradients_across_ranks(synth_data: Path, tmp_path: Path) -> None:
    """Both ranks see different images; with DDP's all-reduce they end the step with identical
    parameters, and with the sync switched off (``no_sync``) they do not. Without the DDP wrapper
    in the trainer the ranks would silently train two different models."""
    import torch
    import torch.multiprocessing as mp

    for sync in (True, False):
        mp.spawn(_one_step_worker, args=(_free_port(), str(synth_data), str(tmp_path / "runs"), sync, str(tmp_path)),
                 nprocs=2, join=True)  # fmt: skip
    runs = {key: torch.load(tmp_path / f"{key}.pt", weights_only=True)
            for key in ("sync_rank0", "sync_rank1", "nosync_rank0", "nosync_rank1")}  # fmt: skip

    names = list(runs["sync_rank0"])
    for name in names:
        torch.testing.assert_close(runs["sync_rank0"][name], runs["sync_rank1"][name], rtol=0, atol=0, msg=name)

    def changed(a: str, b: str) -> int:
        return sum(not torch.equal(runs[a][n], runs[b][n]) for n in names)

    # Every layer that saw a gradient differs once each rank keeps its own gradient.
    assert changed("nosync_rank0", "nosync_rank1") > len(names) // 2
    assert changed("sync_rank0", "nosync_rank0") > len(names) // 2
    assert changed("sync_rank0", "nosync_rank1") > len(names) // 2


@pytest.mark.slow
def test_resume_under_torchrun_is_decided_by_rank_0(synth_data: Path, tmp_path: Path) -> None:
    """Epoch 1 in-process, then epoch 2 under torchrun with --resume auto, rank 1 blind to checkpoints
    (tests/train/ddp_resume_entry.py makes any look at one fail): it must follow rank 0's decision and data."""
    args = cli_args(synth_data, tmp_path, "resume")
    first = [*args[: args.index("--max-epoch")], "--max-epoch", "1", *args[args.index("--max-epoch") + 2:],
             "--lr-steps", "2"]
    assert main(first) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("FEATHERFACE_DEVICE", None)
    entry = REPO / "tests" / "train" / "ddp_resume_entry.py"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(entry),
           *args, "--lr-steps", "2", "--resume", "auto"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stderr and "looked for a checkpoint" not in proc.stderr
    last = read_checkpoint(tmp_path / "resume" / "weights" / "last.pth")
    assert (last["epoch"], last["global_step"]) == (2, 2)
    meta = json.loads((tmp_path / "resume" / "run.json").read_text())
    assert meta["status"] == "finished" and [r["epoch"] for r in meta["resumes"]] == [1]
