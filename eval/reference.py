"""Published reference numbers and the project targets, kept apart from anything measured here.

`results/reference_results.csv` (REFERENCE_COLUMNS) is generated from the constants below and
committed; measured rows only ever go to comparison_table.csv. `kind` is "published" (numbers
from the literature, latency on the source's own hardware) or "target" (what this project aims
for with the parallel design). AP values are percentages; mAP is the mean of easy/medium/hard.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.artifacts import REFERENCE_COLUMNS, TARGETS, ResultsFileError, atomic_write_csv, read_results_csv

DEFAULT_PATH = Path("results/reference_results.csv")
KINDS: tuple[str, ...] = ("published", "target")

_PAPER = ("FeatherFace: Robust and Lightweight Face Detection via Optimal Feature Integration, "
          "Electronics 2025, 14(3), 517, doi:10.3390/electronics14030517; latency on the source's hardware")

_RETINAFACE = ("RetinaFace-mobilenet0.25, WIDERFace val at original image scale, single scale: README of "
               "github.com/biubug6/Pytorch_Retinaface (table 'Pytorch (original image scale)')")

REFERENCE_ROWS: tuple[dict[str, Any], ...] = (
    {"kind": "published", "model": "cbam", "display_name": "CBAM baseline", "params": 488664,
     "easy": 92.7, "medium": 90.7, "hard": 78.3, "mAP": 87.2, "latency_ms": 4.5, "source": _PAPER},
    {"kind": "published", "model": "eca_cbam", "display_name": "ECA-CBAM sequential", "params": 476345,
     "easy": 85.8, "medium": 83.9, "hard": 78.3, "mAP": 82.7, "latency_ms": 4.1,
     "source": "FeatherFace ECA-CBAM sequential reference result; latency on the source's hardware"},
    {"kind": "published", "model": "retinaface_mnet", "display_name": "RetinaFace-mnet0.25 (baseline)",
     "params": 426608, "easy": 90.70, "medium": 88.16, "hard": 73.82, "mAP": 84.23, "latency_ms": None,
     "source": _RETINAFACE},
    {"kind": "target", "model": "eca_cbam_parallel", "display_name": "Target (ECA-CBAM parallel)", "params": None,
     **TARGETS, "latency_ms": None, "source": "project target for the parallel ECA-CBAM design"},
)


def reference_frame() -> pd.DataFrame:
    frame = pd.DataFrame(list(REFERENCE_ROWS), columns=list(REFERENCE_COLUMNS))
    frame["params"] = frame["params"].astype("Int64")  # integers, blank for the target row
    return frame


def write_reference(path: Path | str = DEFAULT_PATH) -> Path:
    """(Re)write the reference CSV atomically from the constants above."""
    atomic_write_csv(reference_frame(), path)
    return Path(path)


def load_reference(path: Path | str = DEFAULT_PATH) -> pd.DataFrame:
    """Read and validate the reference CSV (columns, known kinds); `ResultsFileError` otherwise."""
    frame = read_results_csv(path, REFERENCE_COLUMNS)
    bad = sorted(set(frame["kind"].astype(str)) - set(KINDS))
    if bad:
        raise ResultsFileError(f"{path}: unknown kind(s) {bad}; expected one of {list(KINDS)}")
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.reference",
                                     description="Write the published/target reference rows CSV.")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    print(f"wrote {len(REFERENCE_ROWS)} rows to {write_reference(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
