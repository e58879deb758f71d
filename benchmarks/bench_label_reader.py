"""Speed of the WIDERFace ``label.txt`` reader (``core.data.widerface.read_labels``).

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_label_reader --out benchmarks/results/label_reader.txt

Label files of 1,000 / 4,000 / 16,000 images, each a header and nine face lines (20-number and
4-number lines, with and without landmarks); WIDER FACE train is 12,880 images and about 172k
lines. Sizes are timed round-robin in each round, so load on the shared machine hits all alike;
the report gives the median of --rounds and the time per line, which stays flat when reading is
linear. The unit test (tests/core/data/test_label_reader.py) checks linearity by counting executed lines.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from core.data.widerface import read_labels
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, output_file

FACE20 = "78 221 7 8 79.0 223.0 0.0 83.0 223.0 0.0 81.0 225.0 0.0 79.0 227.0 0.0 83.0 227.0 0.0 0.5"
NO_LMK20 = "78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 0.2"
FACE4 = "10 20 30 40"
BLOCK = [FACE20, NO_LMK20, FACE20, FACE4, FACE20, NO_LMK20, FACE20, FACE20, FACE20]


def write_label(path: Path, images: int) -> int:
    lines: list[str] = []
    for image in range(images):
        lines.append(f"# 0--Parade/img_{image}.jpg")
        lines.extend(BLOCK)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_label_reader", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000], help="images per file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=output_file, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    report: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        report.append(text)

    say("label.txt reader benchmark: core.data.widerface.read_labels")
    say(f"python {platform.python_version()}, {os.cpu_count()} CPU(s), {platform.machine()}, "
        f"load average {' / '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min) at start")
    with tempfile.TemporaryDirectory() as tmp:
        files = {n: Path(tmp) / f"label_{n}.txt" for n in args.sizes}
        line_counts = {n: write_label(path, n) for n, path in files.items()}
        times: dict[int, list[float]] = {n: [] for n in args.sizes}
        for _ in range(args.rounds):
            for n, path in files.items():
                start = time.perf_counter()
                records, _ = read_labels(path)
                times[n].append(time.perf_counter() - start)
                assert len(records) == n
    say(f"median of {args.rounds} rounds, sizes interleaved in each round")
    say(f"{'images':>8} {'lines':>8} {'median s':>9} {'min s':>7} {'max s':>7} {'us/line':>8} {'lines/s':>10}")
    for n in args.sizes:
        med = statistics.median(times[n])
        say(f"{n:>8} {line_counts[n]:>8} {med:>9.3f} {min(times[n]):>7.3f} {max(times[n]):>7.3f} "
            f"{1e6 * med / line_counts[n]:>8.2f} {line_counts[n] / med:>10,.0f}")
    say(f"load average {' / '.join(f'{v:.2f}' for v in os.getloadavg())} at end")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, "\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
