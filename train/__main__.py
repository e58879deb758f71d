"""Entry point: ``python -m train ...`` and ``torchrun --nproc_per_node K -m train ...``."""

from train.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
