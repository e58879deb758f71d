"""torchrun entry for tests/train/test_train_ddp.py: ``python -m train`` where ranks other than 0 cannot see any
checkpoint, as on a node without the shared filesystem. Any attempt of theirs to look for or read one fails."""

from __future__ import annotations

import os
import sys

import train.state
import train.trainer
from train.cli import main


def _blind(*_args: object, **_kwargs: object) -> None:
    raise AssertionError(f"rank {os.environ['RANK']} looked for a checkpoint; only rank 0 may")


if __name__ == "__main__":
    if os.environ.get("RANK", "0") != "0":
        train.state.resolve_resume = _blind
        train.trainer.resolve_resume = _blind
        train.trainer.read_checkpoint = _blind
    raise SystemExit(main(sys.argv[1:]))
