"""The last line of a log that says something: what ``--status`` and the Overview show for a failed run.

Standard library only: the SLURM job wrapper (``train.study.job``) imports it on the node, where
importing torch or pandas for it would cost seconds per job.
"""

from __future__ import annotations

from pathlib import Path


def last_line_of(text: str) -> str | None:
    """The last line that says something: not empty, not srun's own sign-off.

    ("srun: error: node: task 0: Exited with exit code 1" follows the job's actual last word.) A progress
    bar's carriage returns split lines too.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("srun: ")]
    return (said or lines or [None])[-1]


def log_last_line(path: str | Path | None, tail_bytes: int = 16384) -> str | None:
    """`last_line_of` a log file's tail (logs grow large); None when missing or empty."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - tail_bytes))
            return last_line_of(handle.read().decode("utf-8", errors="replace"))
    except OSError:
        return None
