"""Forward-pass latency of the detector variants, timed interleaved, and each one's overhead vs "none".

Timed is `model(x)` on a fixed random batch (the network only: no image decoding, no NMS), after
warm-up, with CUDA synchronised around every run. The variants are timed **interleaved**: each round
runs every model once, the order rotating from round to round, so that load on a shared machine
hits all of them alike and per-round differences are paired (statistics in eval.verdicts.latency_ci).
Every timed run is kept (latency_runs.csv beside latency_benchmark.csv). The thread count is fixed
for the whole session and recorded. Weights do not change the work done, so `run_latency` times
freshly built models; `measure` is UI-free: the dashboard passes a progress callback.
Timings run one at a time on the machine (eval.latency.lock) and record the load average at their start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from core.config import MODEL_CONFIGS
from core.device import device_name, select_device
from core.factory import build_model
from core.io.cli_paths import CliParser, fail, output_file
from core.lab.artifacts import (
    LATENCY_COLUMNS,
    LATENCY_CSV,
    LATENCY_REQUIRED,
    LATENCY_RUN_COLUMNS,
    LATENCY_RUNS_CSV,
    ResultsFileError,
)
from eval.deploy.bn_fold import prepare_for_inference
from eval.deploy.onnx_export import OnnxExportError
from eval.deploy.onnx_runtime import BACKENDS, OnnxRuntimeModel, backend_missing, check_backend
from eval.latency.lock import DEFAULT_MAX_WAIT_S, MachineLoad, WaitCallback, load_warning, say_once, timing_slot
from eval.runs.results_csv import append_rows, read_results_csv
from eval.verdicts.latency_ci import RESAMPLES, precision_note, summarize_runs

Forward = Callable[[torch.Tensor], Any]
"""A detector forward: a PyTorch module or an `OnnxRuntimeModel` (same call, same outputs)."""
ProgressCallback = Callable[[int, int], None]
"""Called as `callback(done, total)` after each round (total = warm-up rounds + timed rounds)."""

DEFAULT_CSV = Path("results") / LATENCY_CSV
DEFAULT_ROUNDS = 120
DEFAULT_WARMUP = 5
"""120 paired rounds resolve about 1 ms at 640x640 on 2 quiet CPU threads (95% CIs of about ±0.3-0.6 ms
around a ~30 ms forward pass, issue 10's measurement). Under load the CIs widen with the noise: ±22-28 ms
at a load average of ~9 on the 2-core build machine (benchmarks/results/latency_precision.txt), where
pairing still made them 2-3x narrower than unpaired ones. Every result states its own precision."""


def _resolve(device: str | torch.device) -> torch.device:
    """"auto" and friends go through `select_device`, so the dashboard can pass its setting as is."""
    return device if isinstance(device, torch.device) else select_device(device)


def is_channels_last(model: Forward) -> bool:
    """True when the model's first spatial conv weight is stored channels-last (False for non-modules)."""
    if not isinstance(model, torch.nn.Module):
        return False
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def _device_of(model: Forward) -> torch.device:
    """A module's parameter device; ONNX Runtime sessions (and parameter-free callables) are on the CPU."""
    param = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return param.device if param is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def runs_csv_for(summary_csv: Path | str) -> Path:
    """latency_runs.csv beside a latency_benchmark.csv."""
    return Path(summary_csv).with_name(LATENCY_RUNS_CSV)


def measure(
    models: Mapping[str, Forward],
    input_hw: tuple[int, int] = (640, 640),
    batch: int = 1,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    device: str | torch.device | None = None,
    progress_callback: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Time every model once per round, `warmup` untimed rounds first; the order rotates each round.

    Returns every timed run in long format (round, position, model, ms). Models are moved to `device`
    (default: the first model's). A channels-last model gets a channels-last input, so the layout
    conversion is not timed. A non-module forward (an ONNX Runtime session) runs on the CPU.
    """
    if not models:
        raise ValueError("no model to time")
    if rounds < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need rounds >= 1, warmup >= 0, batch >= 1; got {rounds}, {warmup}, {batch}")
    dev = _resolve(device) if device is not None else _device_of(next(iter(models.values())))
    names = list(models)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, *input_hw, generator=gen) * 255 - 117).to(dev)
    prepared = {}
    for name in names:
        model = models[name]
        if isinstance(model, torch.nn.Module):
            model = model.to(dev).eval()
        elif dev.type != "cpu":
            raise ValueError(f"{name}: a non-PyTorch backend runs on the CPU only, not {dev}")
        prepared[name] = (model, x.contiguous(memory_format=torch.channels_last) if is_channels_last(model) else x)
    total = warmup + rounds
    records: list[tuple[int, int, str, float]] = []
    with torch.inference_mode():
        for i in range(total):
            shift = i % len(names)
            for position, name in enumerate(names[shift:] + names[:shift]):
                model, inp = prepared[name]
                _sync(dev)
                start = time.perf_counter()
                model(inp)
                _sync(dev)
                if i >= warmup:
                    records.append((i - warmup, position, name, (time.perf_counter() - start) * 1000.0))
            if progress_callback is not None:
                progress_callback(i + 1, total)
    return pd.DataFrame(records, columns=["round", "position", "model", "ms"])


def measure_session(
    models: Mapping[str, Forward],
    input_hw: tuple[int, int] = (640, 640),
    batch: int = 1,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    device: str | torch.device | None = "auto",
    threads: int | None = None,
    optimized: bool = True,
    progress_callback: ProgressCallback | None = None,
    backend: str = "torch",
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    on_wait: WaitCallback | None = None,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """`measure` on `threads` CPU threads (default: the current setting, restored afterwards), then
    the session's summary rows and long-format runs (`session_rows`). `optimized` is recorded as given.

    Runs inside the machine-wide timing slot (queued up to `max_wait_s` behind another timing, `on_wait`
    told while queued; TimingBusy after that), or inside the caller's slot when it already holds one.
    The rows record the load average at the slot's start."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    dev = _resolve(device) if device is not None else _device_of(next(iter(models.values())))
    with timing_slot(max_wait_s=max_wait_s, on_wait=on_wait) as slot:
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            runs = measure(models, input_hw, batch, rounds, warmup, dev, progress_callback)
            return session_rows(runs, device=dev, input_hw=input_hw, batch=batch, warmup=warmup,
                                optimized=optimized, order=list(models), backend=backend, load=slot.load)
        finally:
            torch.set_num_threads(before)


def session_rows(runs: pd.DataFrame, *, device: torch.device, input_hw: tuple[int, int], batch: int, warmup: int,
                 optimized: bool, order: Sequence[str] | None = None, session: str | None = None,
                 date: str | None = None, resamples: int = RESAMPLES, backend: str = "torch",
                 load: MachineLoad | None = None) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """latency_benchmark.csv rows (LATENCY_COLUMNS, models in `order`) and latency_runs.csv rows for one session;
    `load` is the machine's load at the session's start (blank when not given)."""
    session = session or uuid.uuid4().hex[:12]
    date = date or datetime.now().isoformat(timespec="seconds")
    meta = {"date": date, "device": str(device), "device_name": device_name(device), "threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "input_h": input_hw[0], "input_w": input_hw[1], "batch": batch,
            "warmup": warmup, "optimized": optimized, "session": session, "backend": backend,
            "load_avg_1m": round(load.load_1m, 2) if load is not None else None,
            "cpu_count": load.cpus if load is not None else None}
    rows = [meta | stats for stats in summarize_runs(runs, batch=batch, resamples=resamples,
                                                    order=list(order or []))]
    long = runs.assign(session=session).reindex(columns=list(LATENCY_RUN_COLUMNS))
    return [{c: r.get(c) for c in LATENCY_COLUMNS} for r in rows], long


def save_session(summary_csv: Path | str, rows: list[dict[str, Any]], runs: pd.DataFrame) -> None:
    """Append a session's summary rows and every timed run (beside it); both files are checked first."""
    summary_csv = Path(summary_csv)
    check_csvs(summary_csv)
    append_rows(runs_csv_for(summary_csv), runs.to_dict(orient="records"), LATENCY_RUN_COLUMNS)
    append_rows(summary_csv, rows, LATENCY_COLUMNS, required=LATENCY_REQUIRED)


def check_csvs(summary_csv: Path | str) -> None:
    """Raise ResultsFileError for a malformed latency_benchmark.csv or latency_runs.csv (before timing)."""
    summary_csv = Path(summary_csv)
    if summary_csv.exists():
        read_results_csv(summary_csv, LATENCY_REQUIRED)
    if runs_csv_for(summary_csv).exists():
        read_results_csv(runs_csv_for(summary_csv), LATENCY_RUN_COLUMNS)


def run_latency(
    models: Sequence[str],
    input_hw: tuple[int, int] = (640, 640),
    batch: int = 1,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    device: str | torch.device | None = "auto",
    optimize: bool = True,
    out_csv: Path | str | None = None,
    threads: int | None = None,
    progress_callback: ProgressCallback | None = None,
    backend: str = "torch",
    on_wait: WaitCallback | None = None,
) -> list[dict[str, Any]]:
    """Time the named variants interleaved; rows follow LATENCY_COLUMNS, appended to `out_csv` if given
    (with every timed run appended to latency_runs.csv beside it).

    `optimize` times the inference copy (`prepare_for_inference` defaults) instead of the plain eval
    model. `threads` fixes torch's CPU threads for the session (default: the current setting), and the
    row records it. Overhead columns are paired differences to "none", blank when it is not timed.
    `backend="onnxruntime"` times ONNX Runtime sessions (native DeformConv, fixed input size, all
    graph optimisations, intra-op threads = the session's thread count) exported from the same models.
    Export and timing run in one machine-wide timing slot (`on_wait` is told while it queues for it).
    """
    unknown = [m for m in models if m not in MODEL_CONFIGS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; choose from {sorted(MODEL_CONFIGS)}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    check_backend(backend)
    if out_csv is not None:
        check_csvs(out_csv)  # fail before spending minutes on a bad file
    built: dict[str, torch.nn.Module] = {}
    for name in dict.fromkeys(models):
        model = build_model(name).eval()
        built[name] = prepare_for_inference(model) if optimize or backend != "torch" else model
    with timing_slot(on_wait=on_wait):  # an export is heavy CPU work too: not while another run times
        built = for_backend(built, backend, threads, input_hw, batch)
        rows, long = measure_session(built, input_hw, batch, rounds, warmup, device, threads, optimize,
                                     progress_callback, backend)
    if out_csv is not None:
        save_session(out_csv, rows, long)
    return rows


def for_backend(
    models: Mapping[str, torch.nn.Module], backend: str, threads: int | None = None,
    input_hw: tuple[int, int] = (640, 640), batch: int = 1,
) -> dict[str, Forward]:
    """The models as `backend` forwards: unchanged for "torch"; for "onnxruntime", ONNX Runtime sessions
    (native DeformConv, all graph optimisations, `threads` intra-op threads, default torch's setting)
    exported from them, fixed to `input_hw` at batch 1 so every shape is folded, else dynamic; for
    "openvino", compiled OpenVINO models made the same way, their deformable convs in the gather form
    at a fixed size (faster than OpenVINO's own DeformableConvolution at 1 and 2 threads,
    benchmarks/results/deploy_latency.txt) and native when dynamic (the gather form needs static shapes)."""
    if check_backend(backend) == "torch":
        return dict(models)
    fixed = input_hw if batch == 1 else None
    threads = threads or torch.get_num_threads()
    if backend == "openvino":
        from eval.deploy.openvino_runtime import OpenVinoModel

        dcn = "gather" if fixed else "native"
        return {name: OpenVinoModel(m, threads, input_hw=fixed, dcn=dcn) for name, m in models.items()}
    return {name: OnnxRuntimeModel.from_model(m, threads, input_hw=fixed) for name, m in models.items()}


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Terminal table of latency rows."""
    lines = [f"{'model':<20}{'median':>9}{'95% CI':>17}{'fps':>8}{'vs none':>9}{'95% CI':>17}  verdict  (ms)"]
    for r in rows:
        over = r["overhead_vs_none_ms"]
        over_text = f"{over:+9.2f}" if over == over else f"{'-':>9}"
        lo, hi = r["overhead_ci_low_ms"], r["overhead_ci_high_ms"]
        over_ci = f"{lo:+8.2f}{hi:+9.2f}" if lo == lo else f"{'-':>17}"
        med_ci = (f"{r['median_ci_low_ms']:8.2f}{r['median_ci_high_ms']:9.2f}" if r["median_ci_low_ms"] == r[
            "median_ci_low_ms"] else f"{'-':>17}")
        lines.append(f"{r['model']:<20}{r['median_ms']:9.2f}{med_ci}{r['fps']:8.1f}{over_text}{over_ci}  "
                     f"{r['overhead_verdict'] or '-'}")
    lines.append(precision_note(rows))
    return "\n".join(lines)


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.latency", description="Forward-pass latency per variant.")
    parser.add_argument("--models", nargs="+", default=list(MODEL_CONFIGS))
    parser.add_argument("--size", nargs=2, type=int, default=[640, 640], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", "--runs", dest="rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"timed rounds, one run of every model each (default {DEFAULT_ROUNDS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed rounds first")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads, fixed for the session and recorded (default: torch's choice)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="PyTorch eager (default), ONNX Runtime with native DeformConv, or OpenVINO (CPU)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="time the plain eval model instead of the BN-folded inference copy")
    parser.add_argument("--out", type=output_file, default=str(DEFAULT_CSV),
                        help=f"CSV to append to (default {DEFAULT_CSV}); runs go to {LATENCY_RUNS_CSV} beside it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := backend_missing(args.backend):  # before any model is built or file written
        parser.error(problem)
    with tqdm(total=args.warmup + args.rounds, desc="rounds", unit="round") as bar:
        def advance(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            rows = run_latency(args.models, tuple(args.size), args.batch, args.rounds, args.warmup, args.device,
                               args.optimize, args.out, args.threads, advance, args.backend, say_once(tqdm.write))
        except (ResultsFileError, KeyError, ValueError, RuntimeError, OnnxExportError) as exc:
            bar.close()
            return fail(exc)
    print(f"{rows[0]['device_name']}, torch {torch.__version__}, input {args.batch}x3x{args.size[0]}x{args.size[1]}, "
          f"{args.rounds} interleaved rounds, {rows[0]['threads']} threads, backend {args.backend}, "
          f"load average {rows[0]['load_avg_1m']} on {rows[0]['cpu_count']} CPUs at start")
    print(format_rows(rows))
    if warning := load_warning(rows):
        print(f"warning: {warning}")
    print(f"appended {len(rows)} rows to {args.out} and {len(rows) * args.rounds} runs to {runs_csv_for(args.out)}")
    return 0
