"""What the app reads without torch: checkpoint metadata (core.io.checkpoint_meta) against torch's reading
(the parameter totals are tests/eval/verdicts/test_parameter_cache.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import read_checkpoint, save_checkpoint
from core.factory import build_model
from core.io.checkpoint_meta import TENSOR, read_checkpoint_meta

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted((ROOT / "assets").rglob("*.pth"))


def plain(value: object) -> object:
    """torch's reading with every tensor as the placeholder, to compare with the light reader's."""
    if isinstance(value, torch.Tensor):
        return TENSOR
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


def test_shipped_checkpoints_read_the_same_as_with_torch() -> None:
    assert SHIPPED, "the repository ships demo and reference weights"
    for path in SHIPPED:
        meta = read_checkpoint_meta(path)
        assert meta is not None, path
        assert meta == plain(read_checkpoint(path)), path


def test_training_checkpoint_with_optimizer_state(tmp_path: Path) -> None:
    model = build_model("none")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(1, 3, 64, 64))[0].sum().backward()
    optimizer.step()
    path = tmp_path / "last.pth"
    save_checkpoint(path, model, epoch=3, optimizer=optimizer.state_dict(), dataset="synthetic")
    meta = read_checkpoint_meta(path)
    assert meta == plain(read_checkpoint(path)) and meta["epoch"] == 3 and meta["model_name"] == "none"


def test_anything_unusual_is_left_to_torch(tmp_path: Path) -> None:
    """A global outside the allowed containers (here a numpy scalar), a file that is not ours, text, a legacy
    (non-zip) save: None, so that core.checkpoint.read_checkpoint reads or refuses it as before."""
    odd = tmp_path / "odd.pth"
    save_checkpoint(odd, build_model("none"), best=np.float64(1.5))
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(2)}, other)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    legacy = tmp_path / "legacy.pth"
    torch.save({"format": "featherface-checkpoint", "state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    assert [read_checkpoint_meta(p) for p in (odd, other, text, legacy, tmp_path / "absent.pth")] == [None] * 5


def test_the_sidebar_scan_does_not_import_torch() -> None:
    code = ("import sys; from core.lab.roots import resolve_roots; "
            "from dashboard.logic.weights import scan_checkpoints; "
            "scan = scan_checkpoints(resolve_roots([], {})); "
            "print(len(scan.found), len(scan.skipped), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    found, skipped, torch_imported = out.stdout.split()
    assert int(found) == len(SHIPPED) and skipped == "0" and torch_imported == "False"
