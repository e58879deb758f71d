"""Published reference numbers and the project targets, kept apart from anything measured here.

`results/reference_results.csv` (REFERENCE_COLUMNS) is generated from the registry (`core.config`) and
committed; measured rows only ever go to comparison_table.csv. `kind` is "published" (numbers
from the literature, latency on the source's own hardware) or "target" (what this project aims
for with the parallel design). AP values are percentages; mAP is the mean of easy/medium/hard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import MODEL_CONFIGS, TARGET_MODEL, display_name
from core.io.cli_paths import CliParser, output_file
from core.lab.artifacts import REFERENCE_COLUMNS, REFERENCE_CSV, TARGETS, ResultsFileError
from eval.runs.results_csv import atomic_write_csv, read_results_csv

DEFAULT_PATH = Path("results") / REFERENCE_CSV
KINDS: tuple[str, ...] = ("published", "target")



def _reference_rows() -> tuple[dict[str, Any], ...]:
    """Published rows from the registry (`ModelConfig.published`), then the target row."""
    rows: list[dict[str, Any]] = []
    for name, cfg in MODEL_CONFIGS.items():
        if cfg.published is not None:
            rows.append({"kind": "published", "model": name, "display_name": cfg.display_name,
                         **asdict(cfg.published)})
    rows.append({"kind": "target", "model": TARGET_MODEL, "display_name": f"Target ({display_name(TARGET_MODEL)})",
                 "params": None, **TARGETS, "latency_ms": None,
                 "source": f"project target for the {display_name(TARGET_MODEL)} design"})
    return tuple(rows)


REFERENCE_ROWS: tuple[dict[str, Any], ...] = _reference_rows()


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


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.reference",
                       description="Write the published/target reference rows CSV.")
    parser.add_argument("--out", type=output_file, default=str(DEFAULT_PATH))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    print(f"wrote {len(REFERENCE_ROWS)} rows to {write_reference(args.out)}")
    return 0
