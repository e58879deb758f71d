"""What a training checkpoint carries besides the weights, and how ``--resume`` finds one.

Everything stored is safe for ``torch.load(weights_only=True)``: tensors, numbers, strings, lists,
tuples and dicts (RNG states are converted to those; numpy's state array becomes a tensor).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

WEIGHTS_DIR = "weights"
LAST, BEST, FINAL = "last.pth", "best.pth", "Final.pth"


class ResumeError(RuntimeError):
    """``--resume`` cannot be honoured (missing checkpoint, other network, finished run, ...)."""


def weights_dir(run_dir: Path) -> Path:
    return Path(run_dir) / WEIGHTS_DIR


def capture_rng() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.cpu().numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed for one epoch's augmentation on one rank: a function of (seed, epoch, rank) only.

    Reseeding every epoch from this makes the data a resumed run sees identical to what an
    uninterrupted run would have seen, without having to checkpoint loader/worker state.
    """
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """Checkpoint to continue from: ``auto`` -> ``<run>/weights/last.pth`` if present; PATH must exist."""
    if resume is None:
        return None
    if resume == "auto":
        last = weights_dir(run_dir) / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise ResumeError(f"--resume {resume}: checkpoint not found")
    return path


def run_dir_of_checkpoint(path: Path) -> Path | None:
    """``<run>/weights/x.pth`` -> ``<run>``; None for a checkpoint outside a run layout."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == WEIGHTS_DIR else None
