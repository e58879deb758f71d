"""Results CSVs written atomically and read back checked (file present, not empty, parsable, expected columns), so
a page or a command reports a damaged file by name instead of failing on it. Kept out of core so core needs no
pandas."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from core.io.atomic import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)
from core.io.cli_paths import read_problem
from core.lab.artifacts import ResultsFileError


def atomic_write_csv(frame: pd.DataFrame, path: Path | str) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def read_results_csv(path: Path | str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a results CSV and check it has the expected columns; raise `ResultsFileError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ResultsFileError(f"{path}: file is empty")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: not a readable CSV ({read_problem(exc)})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResultsFileError(f"{path}: missing columns {missing}; expected {list(columns)}")
    return frame


def append_rows(path: Path | str, rows: list[dict[str, Any]], columns: tuple[str, ...],
                required: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Append rows to a results CSV (creating it), refusing to touch a malformed existing file.

    `required` (default: all `columns`) lets an older file that lacks newer columns be extended:
    its rows get blanks there.
    """
    path = Path(path)
    new = pd.DataFrame(rows, columns=list(columns))
    if path.exists():
        old = read_results_csv(path, required or columns).reindex(columns=list(columns))
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    atomic_write_csv(new, path)
    return new
