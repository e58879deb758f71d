"""A checkpoint path that is not a torch file at all gets a clear reason, in the loader and in the sidebar scan."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from core.lab.roots import resolve_roots
from dashboard.logic.weights import scan_checkpoints

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
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint: it is a numpy \.npy file"):
        read_checkpoint(tmp_path / "arr.pth")
    (tmp_path / "blob.pth").write_bytes(bytes(range(200, 256)) * 4)
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint: it starts with .*\(binary data\)"):
        read_checkpoint(tmp_path / "blob.pth")


def test_sidebar_scan_lists_the_reason(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "notes.pth").write_bytes(NOT_TORCH["notes.pth"][0])
    scan = scan_checkpoints(resolve_roots([], {}, tmp_path))
    assert scan.found == [] and len(scan.skipped) == 1 and "is not a PyTorch checkpoint" in scan.skipped[0]


def _saved(tmp_path: Path) -> bytes:
    """The bytes of a real (small) torch.save file."""
    import torch

    torch.save({"state_dict": {"w": torch.zeros(64)}}, tmp_path / "real.pth")
    return (tmp_path / "real.pth").read_bytes()


def _zip_without_data_pkl(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos/a.jpg", b"\xff\xd8\xff")


def _tar(path: Path) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("mobilenetV1X0.25_pretrain.pth")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"abcd"))


BROKEN = {  # file -> (what it looks like, words the message must hold)
    "empty": (lambda p, real: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    "text": (lambda p, real: p.write_text("version https://git-lfs.github.com/spec/v1\n"), r"\(text\)"),
    "truncated zip": (lambda p, real: p.write_bytes(real[: len(real) // 2]), "zip archive of .* cut short"),
    "zip without data.pkl": (lambda p, real: _zip_without_data_pkl(p), "zip archive without data.pkl .*photos/a.jpg"),
    "tar archive": (lambda p, real: _tar(p), "it is a tar archive"),
    "legacy pickle cut short": (lambda p, real: p.write_bytes(b"\x80\x02}q\x00(X"),
                                "legacy .* pickle .* ends too early"),
    "folder": (lambda p, real: p.mkdir(), "is a folder, not a file"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_every_broken_file_is_described_in_words(tmp_path: Path, kind: str) -> None:
    """core.checkpoint.load_torch_file, shared by every loader: the message says what the file looks like and
    what to do, never torch's own text ("KeyError: 101", "()", "PytorchStreamReader failed ...")."""
    from core.backbone_weights import BackboneWeightsError, read_backbone_state
    from core.checkpoint import load_torch_file
    from core.factory import build_model
    from eval.deploy.retinaface_weights import RetinaFaceWeightsError, load_retinaface_weights

    make, words = BROKEN[kind]
    path = tmp_path / "bad.pth"
    make(path, _saved(tmp_path))
    loaders = {"load_torch_file": (lambda: load_torch_file(path), CheckpointError),
               "read_checkpoint": (lambda: read_checkpoint(path), CheckpointError),
               "backbone": (lambda: read_backbone_state(path), BackboneWeightsError),
               "retinaface": (lambda: load_retinaface_weights(build_model("retinaface_mnet"), path),
                              RetinaFaceWeightsError)}
    for name, (load, error) in loaders.items():
        with pytest.raises(error) as info:
            load()
        message = str(info.value)
        assert re.search(words, message), (name, message)
        assert str(path) in message and "\n" not in message, (name, message)
        for torch_text in ("PytorchStreamReader", "KeyError", "Traceback", "()", "101", "weights_only=False"):
            assert torch_text not in message, (name, torch_text, message)
    assert "not a tar archive" in str(pytest.raises(BackboneWeightsError, read_backbone_state, path).value)
