"""Checkpoint round trip and the ways loading can go wrong."""

from __future__ import annotations

import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from core.factory import build_model
from tests.conftest import randomize_batchnorm


def test_round_trip_restores_identical_outputs(tmp_path):
    model = randomize_batchnorm(build_model("eca_cbam_parallel")).eval()
    path = tmp_path / "weights" / "Final.pth"
    save_checkpoint(path, model, epoch=7)
    loaded, meta = load_checkpoint(path, expected_name="eca_cbam_parallel")
    assert meta["epoch"] == 7 and meta["model_name"] == "eca_cbam_parallel"
    assert loaded.cfg == model.cfg
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model(x), loaded.eval()(x), strict=True):
            assert torch.equal(a, b)
    assert not list(tmp_path.glob("weights/.*tmp"))  # no temp file left behind


def test_other_variant_is_refused(tmp_path):
    path = tmp_path / "cbam.pth"
    save_checkpoint(path, build_model("cbam"))
    with pytest.raises(CheckpointError, match="holds model 'cbam', but 'eca_cbam' was requested"):
        load_checkpoint(path, expected_name="eca_cbam")


def test_truncated_empty_missing_and_foreign_files(tmp_path):
    path = tmp_path / "ok.pth"
    save_checkpoint(path, build_model("none"))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a FeatherFace checkpoint"):
        read_checkpoint(foreign)


def test_mismatched_state_dict_is_named(tmp_path):
    path = tmp_path / "bad.pth"
    save_checkpoint(path, build_model("cbam"))
    data = torch.load(path, weights_only=True)
    data["state_dict"].pop("heads.cls.convs.0.weight")
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_checkpoint(path)
