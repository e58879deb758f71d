"""How fine a latency difference eval.latency.timing's defaults resolve, and what pairing buys.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_latency_precision --out benchmarks/results/latency_precision.txt

Times the four entries interleaved (eval.latency.timing.run_latency: BN-folded, channels-last, 640x640,
batch 1, the default rounds and warm-up) on a fixed thread count, then reports per model the median
with its 95% bootstrap CI and, against "none", the paired per-round difference with its CI, beside
the unpaired difference of medians and the CI it would have if the runs were not paired (a bootstrap
of the two medians' difference from independently resampled runs). The machine load (os.getloadavg)
is recorded before and after: the point of pairing is that the verdicts hold on a loaded machine.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import torch

from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, output_file
from eval.latency.timing import DEFAULT_ROUNDS, DEFAULT_WARMUP, format_rows, measure_session
from eval.verdicts.latency_ci import RESAMPLES

MODELS = ("cbam", "eca_cbam", "eca_cbam_parallel", "none")


def unpaired_ci(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap CI of median(a) - median(b) resampling a and b independently (ignoring the rounds)."""
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    low, high = np.percentile(ma - mb, [2.5, 97.5])
    return float(low), float(high)


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_latency_precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--out", type=output_file, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from core.factory import build_model
    from eval.deploy.bn_fold import prepare_for_inference

    models = {m: prepare_for_inference(build_model(m).eval()) for m in MODELS}
    load_before = os.getloadavg()
    rows, runs = measure_session(models, (args.size, args.size), 1, args.rounds, args.warmup, "cpu", args.threads)
    load_after = os.getloadavg()
    wide = runs.pivot(index="round", columns="model", values="ms")
    lines = [
        f"# eval.latency.timing precision: {len(MODELS)} entries interleaved, {args.rounds} rounds "
        f"(+{args.warmup} warm-up), 1x3x{args.size}x{args.size}, {args.threads} CPU threads",
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
        f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}",
        "",
        format_rows(rows),
        "",
        "## paired (per-round differences) vs unpaired (medians of independent resamples), model - none, ms",
        f"{'model':<20}{'paired CI':>20}{'width':>8}{'unpaired CI':>22}{'width':>8}",
    ]
    for r in rows:
        if r["model"] == "none":
            continue
        lo_u, hi_u = unpaired_ci(wide[r["model"]].to_numpy(), wide["none"].to_numpy())
        lo_p, hi_p = r["overhead_ci_low_ms"], r["overhead_ci_high_ms"]
        lines.append(f"{r['model']:<20}{lo_p:+9.2f} to {hi_p:+7.2f}{hi_p - lo_p:8.2f}"
                     f"{lo_u:+11.2f} to {hi_u:+7.2f}{hi_u - lo_u:8.2f}")
    lines += ["", "## per-round spread: std of a model's runs vs std of its paired difference to none (ms)"]
    for m in MODELS[:-1]:
        lines.append(f"{m:<20} runs {wide[m].std():6.2f}   paired differences {(wide[m] - wide['none']).std():6.2f}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        atomic_write_text(args.out, report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
