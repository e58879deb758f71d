"""A checkpoint path that is not a torch file at all gets a clear reason, in the loader and in the sidebar scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from eval.model_loading import scan_checkpoints
from eval.roots import resolve_roots

NOT_TORCH = {
    "notes.pth": (b"hello world\n", "(text)"),  # torch.load: bare "KeyError: 101"
    "table.pth": (b"model,params\ncbam,488664\n", "(text)"),  # torch.load: a misleading weights-only refusal
    "config.pth": (b'{"model": "cbam"}', "(text)"),
}


@pytest.mark.parametrize("name", sorted(NOT_TORCH))
def test_text_file_is_named_not_a_checkpoint(tmp_path: Path, name: str) -> None:
    data, kind = NOT_TORCH[name]
    path = tmp_path / name
    path.write_bytes(data)
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert "is not a PyTorch checkpoint" in message and kind in message and "zip archive" in message
        assert "could run code" not in message and "101" not in message


def test_numpy_file_is_named_binary(tmp_path: Path) -> None:
    np.save(tmp_path / "arr.npy", np.zeros(3))
    (tmp_path / "arr.npy").rename(tmp_path / "arr.pth")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint: it starts with .*NUMPY.*\(binary data\)"):
        read_checkpoint(tmp_path / "arr.pth")


def test_sidebar_scan_lists_the_reason(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "notes.pth").write_bytes(NOT_TORCH["notes.pth"][0])
    scan = scan_checkpoints(resolve_roots([], {}, tmp_path))
    assert scan.found == [] and len(scan.skipped) == 1 and "is not a PyTorch checkpoint" in scan.skipped[0]
