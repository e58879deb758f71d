"""Entry point: ``python -m train ...`` and ``torchrun --nproc_per_node K -m train ...``."""

from train.cli import main

raise SystemExit(main())
