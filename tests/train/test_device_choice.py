"""Device per process: under torchrun LOCAL_RANK picks the GPU and a fixed ``cuda:N`` is refused; alone, the
usual ``--device`` / FEATHERFACE_DEVICE / auto rules. GPU counts are passed in, so no GPU is needed."""

from __future__ import annotations

import pytest
import torch

from train.cli import main
from train.distributed import DeviceChoiceError, resolve_device


def torchrun_env(local_rank: int, world: int = 4, **extra: str) -> dict[str, str]:
    return {"WORLD_SIZE": str(world), "RANK": str(local_rank), "LOCAL_RANK": str(local_rank), **extra}


@pytest.mark.parametrize("preference", [None, "auto", "cuda", " CUDA "])
def test_under_torchrun_local_rank_picks_the_gpu(preference: str | None) -> None:
    assert resolve_device(preference, torchrun_env(2), cuda_count=4) == torch.device("cuda", 2)


def test_under_torchrun_auto_without_gpus_and_cpu_stay_on_cpu() -> None:
    assert resolve_device("auto", torchrun_env(1), cuda_count=0) == torch.device("cpu")
    assert resolve_device("cpu", torchrun_env(1), cuda_count=8) == torch.device("cpu")
    assert resolve_device(None, torchrun_env(1, FEATHERFACE_DEVICE="cpu"), cuda_count=8) == torch.device("cpu")


def test_under_torchrun_a_fixed_gpu_index_is_refused_naming_its_source() -> None:
    with pytest.raises(DeviceChoiceError, match=r"--device 'cuda:0' under torchrun would put all 4 processes on GPU 0"):
        resolve_device("cuda:0", torchrun_env(3), cuda_count=4)
    with pytest.raises(DeviceChoiceError, match=r"FEATHERFACE_DEVICE 'cuda:1'.*CUDA_VISIBLE_DEVICES"):
        resolve_device("auto", torchrun_env(0, FEATHERFACE_DEVICE="cuda:1"), cuda_count=4)


def test_under_torchrun_more_processes_than_gpus_or_no_cuda_is_refused() -> None:
    with pytest.raises(DeviceChoiceError, match="LOCAL_RANK 2 but only 2 GPU"):
        resolve_device("cuda", torchrun_env(2), cuda_count=2)
    with pytest.raises(DeviceChoiceError, match="CUDA is not available"):
        resolve_device("cuda", torchrun_env(0), cuda_count=0)
    with pytest.raises(DeviceChoiceError, match="use cpu, cuda or auto"):
        resolve_device("meta", torchrun_env(0), cuda_count=1)


def test_single_process_keeps_the_usual_rules() -> None:
    assert resolve_device("cpu", {}) == torch.device("cpu")
    assert resolve_device(None, {"FEATHERFACE_DEVICE": "cpu"}) == torch.device("cpu")
    assert resolve_device("auto", {"WORLD_SIZE": "1", "FEATHERFACE_DEVICE": "cpu"}) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda:1", {})


def test_cli_refuses_a_fixed_gpu_under_torchrun_before_starting(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in torchrun_env(1, world=2).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "train").mkdir()  # --data must be a folder with something in it (checked while parsing)
    rc = main(["--network", "none", "--data", str(tmp_path), "--device", "cuda:0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error: --device 'cuda:0' under torchrun would put all 2 processes on GPU 0" in err
