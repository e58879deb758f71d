"""Forward-pass latency of the detector variants, and each variant's attention overhead vs "none".

Timed is `model(x)` on a fixed random batch (the network only: no image decoding, no NMS), after
warm-up, with CUDA synchronised around every run. Weights do not change the work done, so
`run_latency` times freshly built models. `benchmark_model` is UI-free: the dashboard passes a
progress callback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.artifacts import LATENCY_COLUMNS, ResultsFileError, append_rows, read_results_csv
from core.config import MODEL_CONFIGS
from core.device import device_name, select_device
from core.factory import build_model
from core.inference import prepare_for_inference

ProgressCallback = Callable[[int, int], None]
"""Called as `callback(done, total)` after each warm-up and timed run (total = warmup + runs)."""

DEFAULT_CSV = Path("results/latency_benchmark.csv")


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per forward pass over the timed runs; fps counts images (batch * runs / time)."""

    mean_ms: float
    median_ms: float
    p90_ms: float
    std_ms: float
    fps: float
    runs: int
    warmup: int
    batch: int
    times_ms: tuple[float, ...] = field(default=(), repr=False)  # every timed run, for box plots

    def to_dict(self) -> dict[str, float | int]:
        """The summary statistics (what the CSV rows hold), without the per-run times."""
        summary = asdict(self)
        summary.pop("times_ms")
        return summary


def _resolve(device: str | torch.device) -> torch.device:
    """"auto" and friends go through `select_device`, so the dashboard can pass its setting as is."""
    return device if isinstance(device, torch.device) else select_device(device)


def is_channels_last(model: torch.nn.Module) -> bool:
    """True when the model's first spatial conv weight is stored channels-last."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_model(
    model: torch.nn.Module,
    input_hw: tuple[int, int] = (640, 640),
    batch: int = 1,
    runs: int = 50,
    warmup: int = 10,
    device: str | torch.device | None = None,
    progress_callback: ProgressCallback | None = None,
) -> LatencyStats:
    """Time `runs` forward passes of `model` (moved to `device`, default: its own) after `warmup` ones.

    A channels-last model gets a channels-last input, so the layout conversion is not timed.
    """
    if runs < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, batch >= 1; got {runs}, {warmup}, {batch}")
    dev = _resolve(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, *input_hw, generator=gen) * 255 - 117).to(dev)
    if is_channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    total = warmup + runs
    times: list[float] = []
    with torch.inference_mode():
        for i in range(total):
            _sync(dev)
            start = time.perf_counter()
            model(x)
            _sync(dev)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
            if progress_callback is not None:
                progress_callback(i + 1, total)
    t = np.asarray(times)
    return LatencyStats(
        mean_ms=float(t.mean()),
        median_ms=float(np.median(t)),
        p90_ms=float(np.percentile(t, 90)),
        std_ms=float(t.std(ddof=1)) if len(t) > 1 else 0.0,
        fps=float(batch * 1000.0 / t.mean()),
        runs=runs,
        warmup=warmup,
        batch=batch,
        times_ms=tuple(times),
    )


def run_latency(
    models: Sequence[str],
    input_hw: tuple[int, int] = (640, 640),
    batch: int = 1,
    runs: int = 50,
    warmup: int = 10,
    device: str | torch.device | None = "auto",
    optimize: bool = True,
    out_csv: Path | str | None = None,
    progress_callback: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Benchmark each named variant; rows follow LATENCY_COLUMNS and are appended to `out_csv` if given.

    `optimize` times the inference copy (`prepare_for_inference` defaults) instead of the plain eval
    model. `overhead_vs_none_ms` is the median difference to the "none" entry, blank when "none" is not
    among `models`. `progress_callback(model, done, total)` reports per-model progress.
    """
    unknown = [m for m in models if m not in MODEL_CONFIGS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; choose from {sorted(MODEL_CONFIGS)}")
    if out_csv is not None and Path(out_csv).exists():
        read_results_csv(out_csv, LATENCY_COLUMNS)  # fail before spending minutes on a bad file
    dev = _resolve(device)
    date = datetime.now().isoformat(timespec="seconds")
    stats: dict[str, LatencyStats] = {}
    for name in models:
        model = build_model(name).eval()
        if optimize:
            model = prepare_for_inference(model)
        callback = None
        if progress_callback is not None:
            def callback(done: int, total: int, name: str = name) -> None:
                progress_callback(name, done, total)
        stats[name] = benchmark_model(model, input_hw, batch, runs, warmup, dev, callback)
    base = stats["none"].median_ms if "none" in stats else None
    rows = [
        {
            "date": date, "model": name, "device": str(dev), "device_name": device_name(dev),
            "threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "input_h": input_hw[0], "input_w": input_hw[1], "batch": batch, "runs": runs, "warmup": warmup,
            "optimized": optimize, "mean_ms": s.mean_ms, "median_ms": s.median_ms, "p90_ms": s.p90_ms,
            "std_ms": s.std_ms, "fps": s.fps,
            "overhead_vs_none_ms": (s.median_ms - base) if base is not None else float("nan"),
        }
        for name, s in stats.items()
    ]
    if out_csv is not None:
        append_rows(out_csv, rows, LATENCY_COLUMNS)
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Terminal table of latency rows."""
    lines = [f"{'model':<20}{'median':>9}{'mean':>9}{'p90':>9}{'std':>8}{'fps':>8}{'vs none':>9}  (ms)"]
    for r in rows:
        over = r["overhead_vs_none_ms"]
        over_text = f"{over:+9.2f}" if over == over else f"{'-':>9}"
        lines.append(f"{r['model']:<20}{r['median_ms']:9.2f}{r['mean_ms']:9.2f}{r['p90_ms']:9.2f}"
                     f"{r['std_ms']:8.2f}{r['fps']:8.1f}{over_text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.latency", description="Forward-pass latency per variant.")
    parser.add_argument("--models", nargs="+", default=["cbam", "eca_cbam", "eca_cbam_parallel", "none"])
    parser.add_argument("--size", nargs=2, type=int, default=[640, 640], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="time the plain eval model instead of the BN-folded inference copy")
    parser.add_argument("--out", type=Path, default=DEFAULT_CSV, help=f"CSV to append to (default {DEFAULT_CSV})")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = run_latency(args.models, tuple(args.size), args.batch, args.runs, args.warmup, args.device,
                           args.optimize, args.out)
    except (ResultsFileError, KeyError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{rows[0]['device_name']}, torch {torch.__version__}, input {args.batch}x3x{args.size[0]}x{args.size[1]}")
    print(format_rows(rows))
    print(f"appended {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
