"""CPU latency of the four FeatherFace entries, FLOPs, the deformable-conv share, and the optimisation steps.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_model_latency --out benchmarks/results/model_latency.txt [--compile]

All timings are batch 1, 3x640x640, forward pass only, `torch.inference_mode`, medians of `--runs`
runs after `--warmup`. Configurations are timed interleaved (one run of each per round, rotating the
order) so that load from other processes on a shared machine hits every configuration alike.
Equality is checked on the astronaut sample with non-trivial BN statistics and deformable offsets.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from core.config import MODEL_CONFIGS
from core.detector import FeatherFace
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, output_file
from core.io.image_input import rgb_to_model_tensor
from core.layers.deform_conv import ModulatedDeformConv2d
from eval.deploy.bn_fold import prepare_for_inference
from eval.latency.timing import is_channels_last
from tests.conftest import realistic_model

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
IMAGE = Path("assets/samples/astronaut.png")
HW = (640, 640)


def set_dcn_kernel(model: torch.nn.Module, kernel: str) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, ModulatedDeformConv2d):
            m.kernel = kernel
    return model


def sample_input() -> torch.Tensor:
    bgr = cv2.imread(str(IMAGE), cv2.IMREAD_COLOR)
    rgb = cv2.resize(bgr, HW[::-1], interpolation=cv2.INTER_AREA)[..., ::-1]
    return rgb_to_model_tensor(np.ascontiguousarray(rgb), MODEL_CONFIGS["none"].bgr_mean)


def time_interleaved(configs: dict[str, tuple[Forward, torch.Tensor]], runs: int, warmup: int) -> dict[str, np.ndarray]:
    """ms per forward for each config, one run of each per round with a rotating order."""
    names = list(configs)
    with torch.inference_mode():
        for name in names:
            fn, x = configs[name]
            for _ in range(warmup):
                fn(x)
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(runs):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn, x = configs[name]
                start = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - start) * 1000)
    return {n: np.asarray(t) for n, t in times.items()}


def max_abs_diff(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b, strict=True))


def count_flops(model: FeatherFace, x: torch.Tensor) -> dict[str, float]:
    """FlopCounterMode FLOPs (2 per multiply-add, convs and matmuls only) plus the deformable convs.

    FlopCounterMode has no formula for torchvision::deform_conv2d, so with the torchvision kernel the
    DCN GEMM (2 * Cin * 9 * Cout * Ho * Wo per layer) is missing; it is added analytically from the
    shapes seen by forward hooks. Bilinear sampling and modulation (about 4 + 3 + 1 = 8 FLOPs per
    sampled value, Cin * 9 * Ho * Wo values) are elementwise work FlopCounterMode never counts for any
    op; they are reported apart. With the grid_sample kernel the GEMM is an aten matmul, so
    FlopCounterMode counts it: that total must equal the torchvision total + the analytic GEMM.
    """
    shapes: list[tuple[int, int, int, int]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: shapes.append(
        (inp[0].shape[1], out.shape[1], out.shape[2], out.shape[3])))
        for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    counted = {}
    with torch.inference_mode():
        for kernel in ("torchvision", "grid_sample"):
            set_dcn_kernel(model, kernel)
            shapes.clear()
            with FlopCounterMode(display=False) as fc:
                model(x)
            counted[kernel] = float(fc.get_total_flops())
    for h in hooks:
        h.remove()
    gemm = float(sum(2 * cin * 9 * cout * ho * wo for cin, cout, ho, wo in shapes))
    sampling = float(sum(8 * cin * 9 * ho * wo for cin, _, ho, wo in shapes))
    return {"counted_tv": counted["torchvision"], "counted_gs": counted["grid_sample"], "dcn_gemm": gemm,
            "dcn_sampling": sampling, "total": counted["torchvision"] + gemm, "dcn_layers": len(shapes)}


def dcn_share(model: FeatherFace, x: torch.Tensor, kernel: str, iters: int = 10) -> dict[str, float]:
    """Share of forward time inside the ModulatedDeformConv2d modules, from torch.profiler ranges
    (each DCN module's whole forward: its offset/mask 3x3 conv, sampling and GEMM)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    set_dcn_kernel(model, kernel)
    handles = []
    for m in model.modules():
        if isinstance(m, ModulatedDeformConv2d):
            def pre(mod, _inp):
                mod._range = record_function("dcn_module")
                mod._range.__enter__()

            def post(mod, _inp, _out):
                mod._range.__exit__(None, None, None)

            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                with record_function("forward"):
                    model(x)
    for h in handles:
        h.remove()
    events = {e.key: e.cpu_time_total for e in prof.key_averages()}
    core_op = {"torchvision": "torchvision::deform_conv2d", "grid_sample": "aten::grid_sampler_2d"}[kernel]
    total = events["forward"]
    return {"forward_ms": total / iters / 1000, "dcn_ms": events["dcn_module"] / iters / 1000,
            "share": events["dcn_module"] / total, "core_op": core_op,
            "core_share": events.get(core_op, 0.0) / total}


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_model_latency", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about 70 s to compile)")
    parser.add_argument("--out", type=output_file, default=None, help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    x = sample_input()
    say(f"# FeatherFace CPU latency, batch 1, 3x{HW[0]}x{HW[1]}, median of {args.runs} runs after "
        f"{args.warmup} warm-up (interleaved)")
    say(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, load average at start {os.getloadavg()[0]:.2f}")
    say()

    # 1. Optimisation steps on the parallel variant, each checked against the baseline outputs.
    name = "eca_cbam_parallel"
    base = set_dcn_kernel(realistic_model(name), "torchvision")
    grid = set_dcn_kernel(realistic_model(name), "grid_sample")
    folded = prepare_for_inference(grid, fold_bn=True, channels_last=False)
    cl = prepare_for_inference(grid, fold_bn=True, channels_last=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    steps: dict[str, tuple[Forward, torch.Tensor]] = {
        "baseline: torchvision DCN, BN unfolded": (base, x),
        "grid_sample DCN": (grid, x),
        "grid_sample DCN + BN folding": (folded, x),
        "grid_sample DCN + BN folding + channels-last": (cl, x_cl),
    }
    with torch.inference_mode():
        ref = base(x)
        diffs = {label: max_abs_diff(ref, fn(inp)) for label, (fn, inp) in steps.items()}
    times = time_interleaved(steps, args.runs, args.warmup)
    if args.compile:
        best_label = min(times, key=lambda k: np.median(times[k]))
        fn, inp = steps[best_label]
        compiled = torch.compile(fn)
        start = time.perf_counter()
        with torch.inference_mode():
            out = compiled(inp)
        compile_s = time.perf_counter() - start
        label = f"{best_label} + torch.compile"
        diffs[label] = max_abs_diff(ref, out)
        times.update(time_interleaved({label: (compiled, inp), best_label: steps[best_label]}, args.runs,
                                      args.warmup))
    say(f"## Steps toward the reference latency ({name})")
    say(f"{'configuration':<58}{'median ms':>10}{'min ms':>8}{'p90 ms':>9}{'speed-up':>9}{'max |diff|':>12}")
    first = float(np.median(times[next(iter(steps))]))
    for label, t in times.items():
        med = float(np.median(t))
        say(f"{label:<58}{med:>10.1f}{t.min():>8.1f}{np.percentile(t, 90):>9.1f}{first / med:>8.2f}x"
            f"{diffs[label]:>12.2e}")
    say(f"(load average now {os.getloadavg()[0]:.2f})")
    if args.compile:
        say(f"(torch.compile: first call took {compile_s:.0f} s; not a default)")
    say()

    # 2. Where the time goes: deformable convolution share (torch.profiler).
    say("## Deformable convolution share of the forward pass (torch.profiler, 10 iterations)")
    prof_model = realistic_model(name)
    for kernel in ("torchvision", "grid_sample"):
        s = dcn_share(prof_model, x, kernel)
        say(f"{kernel:<12} forward {s['forward_ms']:6.1f} ms, 15 DCN modules {s['dcn_ms']:6.1f} ms "
            f"= {100 * s['share']:4.1f}% (the {s['core_op']} op alone: {100 * s['core_share']:4.1f}%)")
    say("(profiler overhead inflates absolute times a little; the shares are what matters)")
    say()

    # 3. The four entries side by side: baseline and the default inference copy.
    models = {n: realistic_model(n) for n in MODEL_CONFIGS}
    side: dict[str, tuple[Forward, torch.Tensor]] = {}
    for n, m in models.items():
        side[f"{n}|baseline"] = (set_dcn_kernel(prepare_for_inference(m, fold_bn=False), "torchvision"), x)
        fast = prepare_for_inference(m)  # project default: DCN "auto" (grid_sample on CPU), BN folded
        side[f"{n}|default"] = (fast, x_cl if is_channels_last(fast) else x)
    side_times = time_interleaved(side, args.runs, args.warmup)
    say("## The four entries (params, FLOPs at 640x640, CPU median latency)")
    say(f"{'model':<20}{'params':>9}{'GFLOPs':>8}{'baseline ms':>13}{'default ms':>12}{'(min)':>8}{'vs none':>9}")
    none_ms = float(np.median(side_times["none|default"]))
    flops_by_model = {}
    for n, m in models.items():
        flops = count_flops(set_dcn_kernel(m, "torchvision"), x)
        flops_by_model[n] = flops
        b, d = (float(np.median(side_times[f"{n}|{k}"])) for k in ("baseline", "default"))
        say(f"{n:<20}{m.get_parameter_count()['total']:>9,}{flops['total'] / 1e9:>8.3f}{b:>13.1f}{d:>12.1f}"
            f"{side_times[f'{n}|default'].min():>8.1f}{d - none_ms:>+9.1f}")
    say(f"(load average now {os.getloadavg()[0]:.2f}; 'vs none' is the attention overhead, median difference)")
    f = flops_by_model[name]
    say()
    say("FLOPs: torch.utils.flop_counter.FlopCounterMode (2 per multiply-add; convs and matmuls only) does "
        "not count torchvision::deform_conv2d,")
    say(f"so the {f['dcn_layers']} DCN layers' GEMM is added analytically (2*Cin*9*Cout*Ho*Wo): "
        f"{f['dcn_gemm'] / 1e9:.3f} GFLOPs of the {f['total'] / 1e9:.3f}.")
    say(f"Check: with the grid_sample kernel FlopCounterMode sees that GEMM as a matmul: {f['counted_gs'] / 1e9:.3f} "
        f"vs {f['counted_tv'] / 1e9:.3f} + {f['dcn_gemm'] / 1e9:.3f}.")
    say(f"Not in any total: bilinear sampling + modulation, ~{f['dcn_sampling'] / 1e9:.3f} GFLOPs of elementwise "
        "work (8 per sampled value).")
    say("Scale: RetinaFace-mobilenet0.25 (427K params, 1.96 GFLOPs at 640x640) runs ~22 ms median on this "
        "machine (figure from the issue, not re-measured here).")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
