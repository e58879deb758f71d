"""--sync-bn: every BatchNorm (the CBAM spatial gate's included) becomes SyncBatchNorm under DDP, the state dict
keys stay those of the plain model, so checkpoints load without DDP; CPU runs refuse it clearly.

SyncBatchNorm has no CPU kernel for its synchronised training forward, so its multi-GPU statistics are not
exercised here; conversion, eval-mode equality, BN folding and the checkpoint round trip are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from core.checkpoint import load_checkpoint, save_checkpoint
from core.synth.generate import generate_dataset
from eval.deploy.bn_fold import prepare_for_inference
from tests.conftest import realistic_model
from train import distributed
from train.distributed import DistContext
from train.trainer import TrainConfig, Trainer, TrainSetupError

CPU = torch.device("cpu")


def test_conversion_keeps_names_outputs_and_loads_back_into_the_plain_model(tmp_path: Path) -> None:
    plain = realistic_model("cbam")
    names = {n for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert "backbone_attention.0.spatial_gate.bn" in names and len(names) == 65
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(realistic_model("cbam"))
    assert {n for n, m in synced.named_modules() if isinstance(m, nn.SyncBatchNorm)} == names
    assert not any(type(m) is nn.BatchNorm2d for m in synced.modules())
    assert list(synced.state_dict()) == list(plain.state_dict())

    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():  # eval mode: running statistics, no communication
        for a, b in zip(synced.eval()(x), plain(x), strict=True):
            assert torch.equal(a, b)

    save_checkpoint(tmp_path / "synced.pth", synced)
    loaded, _ = load_checkpoint(tmp_path / "synced.pth", expected_name="cbam")
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in loaded.modules())
    for key, value in plain.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_inference_copy_of_a_synced_model_folds_every_batchnorm() -> None:
    plain = realistic_model("cbam")
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(realistic_model("cbam"))
    fast = prepare_for_inference(synced, channels_last=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(fast(x), prepare_for_inference(plain, channels_last=False)(x), strict=True):
            assert torch.equal(a, b)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("syncbn") / "synth", num_train=4, num_val=0, seed=0)


def config(data: Path, out: Path, name: str) -> TrainConfig:
    return TrainConfig(network="cbam", data=data, out=out, run_name=name, max_epoch=1, batch_size=4, img_size=64,
                       workers=0, progress=False, device="cpu", sync_bn=True)


def test_sync_bn_on_cpu_ranks_is_refused(synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 of a pretend 2-process CPU run (no process group: the start-up broadcast is a pass-through)."""
    monkeypatch.setattr(distributed, "broadcast_object", lambda _ctx, obj: obj)
    with pytest.raises(TrainSetupError, match="--sync-bn needs CUDA"):
        Trainer(config(synth, tmp_path, "ddp"), DistContext(rank=0, world_size=2, local_rank=0, device=CPU))


def test_sync_bn_without_torchrun_is_a_recorded_no_op(synth: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    trainer = Trainer(config(synth, tmp_path, "single"), DistContext(rank=0, world_size=1, local_rank=0, device=CPU))
    trainer.writer.close()
    assert "--sync-bn only matters under torchrun" in capsys.readouterr().err
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in trainer.net.modules())
    assert json.loads((tmp_path / "single" / "run.json").read_text())["sync_bn"] is False
