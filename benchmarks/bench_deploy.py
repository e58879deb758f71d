"""Deployment latency: every detector variant in each CPU runtime, against RetinaFace-mnet0.25 in the same runtime.

Run from the repository root (writes the report it prints):
    .venv/bin/python -m benchmarks.bench_deploy --out benchmarks/results/deploy_latency.txt

Conditions: CPU, batch 1, 3x640x640, `--threads` (default 2) for torch and every runtime, forward pass
only. One child process per runtime (PyTorch, ONNX Runtime, OpenVINO): two runtimes' thread pools in
one process slow each other. Within a process every configuration is timed interleaved (one run of each
per round, the order rotating), so load from other processes hits them alike; medians come with a 95%
bootstrap CI, and each variant's ratio to `retinaface_mnet` in the same runtime is the median of its
per-round ratios (paired) with a 95% bootstrap CI. Every configuration is first checked for equal
outputs (max |diff| of loc, conf, landmarks against the plain PyTorch eval model on the bundled
sample) with trained-looking BN statistics and non-zero deformable offsets
(`tests.conftest.realistic_model`). Per runtime, one 80x80 deformable layer of each SSH shape is also
timed against a regular 3x3 conv of equal multiply-adds (C -> O + 27: the main conv plus the offset
conv), and the forward pass is profiled (PyTorch profiler, ONNX Runtime's and OpenVINO's own).
Each child holds the machine's timing lock (`eval.latency.lock`) and records the load average.

Two more rows bound what a faster kernel could give: `<variant>_without_dcn` (plain convs, no offset convs)
and `<variant>_sampling_free` (offset convs kept, sampling removed: the floor of any DCN kernel). A ratio
is taken against retinaface_mnet in the same configuration where it has one (torch.compile against the
compiled baseline), else against its plain row. ONNX Runtime sessions run without spinning workers (see
`eval.deploy.onnx_runtime.OnnxRuntimeModel`); its section also times them with spinning, interleaved and alone.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.config import MODEL_CONFIGS
from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, missing_tools, output_file
from core.layers.deform_conv import ModulatedDeformConv2d
from core.nets.ssh import use_native_deform_op
from eval.deploy.bn_fold import prepare_for_inference
from eval.latency.lock import timing_slot
from eval.verdicts.latency_ci import bootstrap_median_ci

HW = (640, 640)
BASELINE = "retinaface_mnet"
FEATHERFACE = tuple(n for n in MODEL_CONFIGS if n != BASELINE)
PROFILED = "eca_cbam_parallel"
CONTROL = f"{PROFILED}_without_dcn"
"""The profiled variant with plain 3x3 convs in its SSHs (`deformable_ssh=False`): what FeatherFace costs
in a runtime apart from its deformable convs, the floor any DCN kernel can reach."""
FLOOR = f"{PROFILED}_sampling_free"
"""The profiled variant's inference copy with every deformable conv's bilinear sampling replaced by a plain 3x3
conv of its weights, its (merged) offset convs still run and feeding the output: not the function, but a time
no deformable-conv kernel can go under, since it only removes the sampling."""
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
LAYER_SHAPES: tuple[tuple[int, int], ...] = ((52, 26), (52, 13), (13, 13))
"""(C_in, C_out) of the SSH's deformable convs at 52 channels: 3x3 branch, 5x5 first, the three 13 -> 13."""
LAYER_HW = 80
GOAL = {"runtime": 1.3, "torch": 1.5}
Run = Callable[[], object]


def outputs(result: object) -> list[np.ndarray]:
    """loc, conf, landmarks as numpy arrays from a torch tuple, an ORT list or an OpenVINO result."""
    if isinstance(result, (tuple, list)):
        return [r.detach().numpy() if isinstance(r, torch.Tensor) else np.asarray(r) for r in result]
    return [np.asarray(v) for v in result.values()]


def max_abs_diff(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))


def sampling_free_op(x: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
    """A deformable conv without its sampling: the plain conv, plus a negligible term that keeps the offset
    conv's output in use (a runtime would drop an unread conv)."""
    return F.conv2d(x, weight, bias, padding=1) + 1e-30 * mask.sum(1, keepdim=True)


def sampling_free(model: nn.Module, channels_last: bool) -> nn.Module:
    """The `FLOOR` model: the fused inference copy whose deformable convs call `sampling_free_op`."""
    return use_native_deform_op(prepare_for_inference(model, channels_last=channels_last), sampling_free_op)


def onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    """`module` exported as the project's detector exports are named (input, loc/conf/landmarks)."""
    import io
    import warnings

    from eval.deploy.onnx_export import INPUT_NAME, OUTPUT_NAMES

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=19, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES))
    return buf.getvalue()


def compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend needs at run time, if this machine has one."""
    import shutil

    return next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)


def interleave(configs: dict[str, Run], rounds: int, warmup: int) -> dict[str, list[float]]:
    """ms per call of each config; every round runs each once, the order rotating between rounds."""
    names = list(configs)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                configs[name]()
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                configs[name]()
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def _load() -> float:
    return os.getloadavg()[0]


# Per runtime: the detector configurations


def torch_configs(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, tuple[str, Run, Run]]:
    """label -> (variant, timed run, checked run). The project's inference copy (BN folded, fused
    deformable SSH, channels-last) for every variant; the previous default (grid_sample DCN, unfused)
    for the profiled variant."""
    xc = x.contiguous(memory_format=torch.channels_last)
    out: dict[str, tuple[str, Run, Run]] = {}
    for name, model in models.items():
        fast = prepare_for_inference(model)
        out[f"{name} | fused inference copy"] = (name, lambda f=fast: f(xc), lambda f=fast: f(xc))
    old = prepare_for_inference(models[PROFILED], fuse_dcn=False)
    out[f"{PROFILED} | grid_sample DCN, unfused (before)"] = (PROFILED, lambda: old(xc), lambda: old(xc))
    floor = sampling_free(models[PROFILED], channels_last=True)
    out[f"{FLOOR} | sampling-free floor"] = (FLOOR, lambda: floor(xc), lambda: floor(xc))
    if compiler():  # not a product path: needs a C++ compiler at run time and about a minute per model
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # weights as constants: conv weights prepacked, BN-free graph folded
        for name in (PROFILED, BASELINE):
            comp = torch.compile(prepare_for_inference(models[name]))
            out[f"{name} | torch.compile (inductor, frozen)"] = (name, lambda c=comp: c(xc), lambda c=comp: c(xc))
    return out


def ort_configs(models: dict[str, nn.Module], x: torch.Tensor, threads: int) -> dict[str, tuple[str, Run, Run]]:
    from eval.deploy.onnx_export import export_onnx_bytes
    from eval.deploy.onnx_runtime import OnnxRuntimeModel

    xn = x.numpy()
    out: dict[str, tuple[str, Run, Run]] = {}
    for name, model in models.items():
        rt = OnnxRuntimeModel(export_onnx_bytes(model, HW), threads)
        out[f"{name} | native DeformConv, fused export"] = (name, lambda r=rt: r.run(xn), lambda r=rt: r.run(xn))
    floor = OnnxRuntimeModel(onnx_bytes(sampling_free(models[PROFILED], channels_last=False), x), threads)
    out[f"{FLOOR} | sampling-free floor"] = (FLOOR, lambda: floor.run(xn), lambda: floor.run(xn))
    return out


def ort_spinning(models: dict[str, nn.Module], x: torch.Tensor, threads: int, rounds: int,
                 warmup: int) -> dict[str, list[float]]:
    """The baseline and the profiled variant with ONNX Runtime's spinning workers on and off: interleaved
    (each pair in its own group, so one group's spinning cannot reach the other) and each session alone."""
    from eval.deploy.onnx_export import export_onnx_bytes
    from eval.deploy.onnx_runtime import OnnxRuntimeModel

    xn = x.numpy()
    data = {name: export_onnx_bytes(models[name], HW) for name in (BASELINE, PROFILED)}
    out: dict[str, list[float]] = {}
    for spinning in (False, True):
        word = "spinning" if spinning else "not spinning"
        sessions = {name: OnnxRuntimeModel(d, threads, spinning=spinning) for name, d in data.items()}
        runs = {f"{name} | interleaved, {word}": (lambda r=rt: r.run(xn)) for name, rt in sessions.items()}
        out.update(interleave(runs, rounds, warmup))
        for name, rt in sessions.items():
            out.update(interleave({f"{name} | alone, {word}": lambda r=rt: r.run(xn)}, rounds, warmup))
        del sessions
    return out


def ov_configs(models: dict[str, nn.Module], x: torch.Tensor, threads: int) -> dict[str, tuple[str, Run, Run]]:
    from eval.deploy.openvino_runtime import OpenVinoModel

    xn = x.numpy()
    out: dict[str, tuple[str, Run, Run]] = {}
    for dcn in ("native", "gather"):
        for name, model in models.items():
            if dcn == "gather" and name in (BASELINE, CONTROL):
                continue
            rt = OpenVinoModel(model, threads, input_hw=HW, dcn=dcn)
            label = f"{name} | {dcn} DCN" if name not in (BASELINE, CONTROL) else f"{name} | (no DCN)"
            out[label] = (name, lambda r=rt: r.run(xn), lambda r=rt: r.run(xn))
    floor = ov_compiled(sampling_free(models[PROFILED], channels_last=False), x, threads)
    out[f"{FLOOR} | sampling-free floor"] = (FLOOR, floor, floor)
    return out


def ov_compiled(module: nn.Module, x: torch.Tensor, threads: int) -> Run:
    """`module` converted and compiled as `eval.deploy.openvino_runtime.OpenVinoModel` compiles a detector."""
    import openvino as ov

    with torch.no_grad():
        model = ov.convert_model(module, example_input=x, input=[list(x.shape)])
    from eval.deploy.openvino_runtime import compile_config

    req = ov.Core().compile_model(model, "CPU", compile_config(threads)).create_infer_request()
    xn = x.numpy()
    return lambda: req.infer({0: xn})


# Per runtime: one deformable layer against a conv of equal multiply-adds


def _layer(c: int, o: int) -> tuple[ModulatedDeformConv2d, nn.Conv2d]:
    gen = torch.Generator().manual_seed(c * 100 + o)
    dcn = ModulatedDeformConv2d(c, o).eval()
    dcn.offset_mask.weight.data.normal_(0, 0.1, generator=gen)
    dcn.offset_mask.bias.data.normal_(0, 1.0, generator=gen)
    return dcn, nn.Conv2d(c, o + 27, 3, padding=1).eval()


def torch_layers(x_by_c: dict[int, torch.Tensor]) -> dict[str, Run]:
    out: dict[str, Run] = {}
    for c, o in LAYER_SHAPES:
        dcn, conv = _layer(c, o)
        x = x_by_c[c].contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
        for kernel in ("gather", "grid_sample", "torchvision"):
            k = ModulatedDeformConv2d(c, o, kernel=kernel).eval()
            k.load_state_dict(dcn.state_dict())
            k = k.to(memory_format=torch.channels_last)
            out[f"{c}->{o} DCN, {kernel} kernel"] = lambda m=k, v=x: m(v)
        out[f"{c}->{o} conv {c}->{o + 27} (equal MACs)"] = lambda m=conv, v=x: m(v)
    return out


def _stand_alone(module: nn.Module, native: Callable | None) -> nn.Module:
    """A single DCN as the exporters see it: offsets and mask from its conv, then the runtime's op."""

    class One(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dcn = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            offset, mask = self.dcn.offsets_and_mask(x)
            w, b = self.dcn.weight, torch.zeros(self.dcn.weight.shape[0])
            return native(x, w, offset, mask, b) if native is not None else self.dcn(x)

    return One().eval()


def ort_layers(x_by_c: dict[int, torch.Tensor], threads: int) -> dict[str, Run]:
    import io
    import warnings

    import onnxruntime as ort

    from eval.deploy.onnx_export import onnx_deform_conv
    from eval.deploy.onnx_runtime import session_options

    def session(module: nn.Module, x: torch.Tensor) -> Run:
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=19, input_names=["x"])
        s = ort.InferenceSession(buf.getvalue(), session_options(threads), providers=["CPUExecutionProvider"])
        xn = x.numpy()
        return lambda: s.run(None, {"x": xn})

    out: dict[str, Run] = {}
    for c, o in LAYER_SHAPES:
        dcn, conv = _layer(c, o)
        out[f"{c}->{o} DCN, DeformConv node"] = session(_stand_alone(dcn, onnx_deform_conv), x_by_c[c])
        out[f"{c}->{o} conv {c}->{o + 27} (equal MACs)"] = session(conv, x_by_c[c])
    return out


def ov_layers(x_by_c: dict[int, torch.Tensor], threads: int) -> dict[str, Run]:
    from eval.deploy.openvino_runtime import torchvision_deform_conv

    out: dict[str, Run] = {}
    for c, o in LAYER_SHAPES:
        dcn, conv = _layer(c, o)
        out[f"{c}->{o} DCN, native DeformableConvolution"] = ov_compiled(
            _stand_alone(dcn, torchvision_deform_conv), x_by_c[c], threads)
        gather = ModulatedDeformConv2d(c, o, kernel="gather").eval()
        gather.load_state_dict(dcn.state_dict())
        out[f"{c}->{o} DCN, gather (MatMul + EmbeddingBag)"] = ov_compiled(gather, x_by_c[c], threads)
        out[f"{c}->{o} conv {c}->{o + 27} (equal MACs)"] = ov_compiled(conv, x_by_c[c], threads)
    return out


# Per runtime: where the time goes


def torch_profile(model: nn.Module, x: torch.Tensor, runs: int) -> list[str]:
    fast = prepare_for_inference(model)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(2):
            fast(xc)
        with torch.profiler.profile() as prof:
            for _ in range(runs):
                fast(xc)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    return [f"  {e.key:<36}{e.self_cpu_time_total / runs / 1000:8.2f} ms {100 * e.self_cpu_time_total / total:5.1f}% "
            f"({e.count // runs} calls)" for e in rows[:10]]


def ort_profile(model: nn.Module, x: torch.Tensor, threads: int, runs: int) -> list[str]:
    from eval.deploy.onnx_export import export_onnx_bytes
    from eval.deploy.onnx_runtime import OnnxRuntimeModel

    with tempfile.TemporaryDirectory() as tmp:
        rt = OnnxRuntimeModel(export_onnx_bytes(model, HW), threads, "all", profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(runs + 2):
            rt.run(x.numpy())
        events = json.loads(Path(rt.end_profiling()).read_text())
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"] / 1000.0)
            op_of[e["name"]] = e["args"]["op_name"]
    by_op: dict[str, float] = collections.Counter()
    for name, durs in per_node.items():
        by_op[op_of[name]] += float(np.median(durs[2:]))
    total = sum(by_op.values())
    ranked = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    return [f"  {op:<36}{ms:8.2f} ms {100 * ms / total:5.1f}%" for op, ms in ranked]


def ov_profile(model: nn.Module, x: torch.Tensor, threads: int, runs: int, dcn: str) -> list[str]:
    import openvino as ov

    from eval.deploy.openvino_runtime import compile_config, trace_ready

    with torch.no_grad():
        converted = ov.convert_model(trace_ready(model, dcn), example_input=x, input=[list(x.shape)])
    req = ov.Core().compile_model(converted, "CPU", {**compile_config(threads), "PERF_COUNT": True}
                                  ).create_infer_request()
    xn = x.numpy()
    for _ in range(2):
        req.infer({0: xn})
    by_type: dict[str, float] = collections.Counter()
    for _ in range(runs):
        req.infer({0: xn})
        for p in req.get_profiling_info():
            by_type[p.node_type] += p.real_time.total_seconds() * 1000.0 / runs
    total = sum(by_type.values())
    return [f"  {op:<36}{ms:8.2f} ms {100 * ms / total:5.1f}%" for op, ms in by_type.most_common(8)]


# The child process


def worker(runtime: str, rounds: int, warmup: int, threads: int, profile_runs: int) -> dict:
    """Everything one runtime reports, as JSON-able data."""
    from core.detector import FeatherFace
    from eval.deploy.export import sample_input
    from tests.conftest import randomize_batchnorm, realistic_model

    torch.set_num_threads(threads)
    x = sample_input(HW, MODEL_CONFIGS[BASELINE].bgr_mean)
    models = {n: realistic_model(n) for n in MODEL_CONFIGS}
    torch.manual_seed(0)
    models[CONTROL] = randomize_batchnorm(
        FeatherFace(dataclasses.replace(MODEL_CONFIGS[PROFILED], deformable_ssh=False)).eval())
    with torch.inference_mode():
        refs = {n: outputs(m(x)) for n, m in models.items()}
    gen = torch.Generator().manual_seed(0)
    x_by_c = {c: torch.randn(1, c, LAYER_HW, LAYER_HW, generator=gen) for c in {c for c, _ in LAYER_SHAPES}}
    with timing_slot():
        load_start = _load()
        if runtime == "torch":
            configs, layers = torch_configs(models, x), torch_layers(x_by_c)
        elif runtime == "onnxruntime":
            configs, layers = ort_configs(models, x, threads), ort_layers(x_by_c, threads)
        else:
            configs, layers = ov_configs(models, x, threads), ov_layers(x_by_c, threads)
        with torch.inference_mode():
            diffs = {label: max_abs_diff(refs[variant], outputs(check())) if variant in refs else float("nan")
                     for label, (variant, _, check) in configs.items()}
        times = interleave({label: run for label, (_, run, _) in configs.items()}, rounds, warmup)
        load_mid = _load()
        spin_times = ort_spinning(models, x, threads, rounds, warmup) if runtime == "onnxruntime" else {}
        layer_times = interleave(layers, rounds, warmup)
        if runtime == "torch":
            profile = torch_profile(models[PROFILED], x, profile_runs)
        elif runtime == "onnxruntime":
            profile = ort_profile(models[PROFILED], x, threads, profile_runs)
        else:
            profile = (["  native DCN:"] + ov_profile(models[PROFILED], x, threads, profile_runs, "native")
                       + ["  gather DCN:"] + ov_profile(models[PROFILED], x, threads, profile_runs, "gather"))
        load_end = _load()
    return {"runtime": runtime, "variants": {label: variant for label, (variant, _, _) in configs.items()},
            "times": times, "diffs": diffs, "layer_times": layer_times, "spin_times": spin_times, "profile": profile,
            "load": [load_start, load_mid, load_end], "versions": _versions(runtime)}


def _versions(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    if runtime == "openvino":
        import openvino

        return f"openvino {openvino.__version__.split('-')[0]}"
    return f"torch {torch.__version__}"


# The report


def median_ci(t: list[float]) -> str:
    med, lo, hi = bootstrap_median_ci(t)
    return f"{med:8.2f} [{lo:7.2f}, {hi:7.2f}]"


def ratio_ci(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median of per-round ratios a/b (paired: same round) with its 95% bootstrap CI."""
    return bootstrap_median_ci(np.asarray(a) / np.asarray(b))


def report(result: dict, threads: int) -> tuple[list[str], dict[str, tuple[float, float, float]]]:
    """The runtime's section, and each FeatherFace variant's best ratio to the baseline (median, CI)."""
    rt = result["runtime"]
    times, variants = result["times"], result["variants"]
    base_label = next(label for label, v in variants.items() if v == BASELINE)
    lines = [f"## {rt} ({result['versions']}), {threads} threads; load average {result['load'][0]:.2f} at start, "
             f"{result['load'][1]:.2f} after the detectors, {result['load'][2]:.2f} at the end", "",
             f"{'configuration':<58}{'median ms [95% CI]':>28}{'x ' + BASELINE:>22}{'[95% CI]':>18}{'max|diff|':>11}"]
    best: dict[str, tuple[float, float, float]] = {}
    for label, t in times.items():
        r, lo, hi = ratio_ci(t, times[paired_baseline(label, times, base_label)])
        diff = result["diffs"][label]
        shown = f"{diff:11.1e}" if np.isfinite(diff) else f"{'(floor)':>11}"
        lines.append(f"{label:<58}{median_ci(t):>28}{r:22.2f} [{lo:5.2f}, {hi:5.2f}]{shown}")
        v = variants[label]
        if v != BASELINE and "(before)" not in label and (v not in best or r < best[v][0]):
            best[v] = (r, lo, hi)
    lines.append(f"(ratios against {BASELINE} in the same configuration where it has one, else against "
                 f"{base_label!r})")
    limit = GOAL["torch"] if rt == "torch" else GOAL["runtime"]
    lines += ["", f"goal: every FeatherFace variant <= {limit}x {BASELINE} in this runtime (best configuration "
                  "per variant; verdict from the ratio's CI):"]
    for v, (r, lo, hi) in best.items():
        if v == CONTROL:
            lines.append(f"  ({CONTROL}: {r:.2f}x [{lo:.2f}, {hi:.2f}], plain 3x3 convs and no offset convs)")
            continue
        if v == FLOOR:
            reach = "out of reach" if lo > limit else "within reach"
            lines.append(f"  ({FLOOR}: {r:.2f}x [{lo:.2f}, {hi:.2f}], offset convs kept and sampling free: the "
                         f"floor of any deformable-conv kernel; the goal is {reach} of a faster kernel here)")
            continue
        verdict = "met" if hi <= limit else "NOT met" if lo > limit else "undecided (CI spans the limit)"
        lines.append(f"  {v:<20}{r:6.2f}x [{lo:.2f}, {hi:.2f}]  {verdict}; {r / limit:.2f}x the limit")
    lines += ["", f"one deformable layer at {LAYER_HW}x{LAYER_HW} (offset conv included) vs a regular 3x3 conv of "
                  "equal multiply-adds, interleaved:"]
    lt = result["layer_times"]
    for c, o in LAYER_SHAPES:
        conv_label = f"{c}->{o} conv {c}->{o + 27} (equal MACs)"
        for label, t in lt.items():
            if label.startswith(f"{c}->{o} "):
                r, lo, hi = ratio_ci(t, lt[conv_label])
                lines.append(f"  {label:<56}{median_ci(t):>28}  x conv {r:6.2f} [{lo:.2f}, {hi:.2f}]")
    spin = result.get("spin_times") or {}
    if spin:
        lines += ["", "ONNX Runtime's spinning workers (ms; ratio of the pair's per-round times):"]
        for how in ("interleaved", "alone"):
            for word in ("not spinning", "spinning"):
                a, b = spin[f"{PROFILED} | {how}, {word}"], spin[f"{BASELINE} | {how}, {word}"]
                r, lo, hi = ratio_ci(a, b) if how == "interleaved" else (np.median(a) / np.median(b), np.nan, np.nan)
                ci = f" [{lo:.2f}, {hi:.2f}]" if how == "interleaved" else " (medians)"
                lines.append(f"  {how + ', ' + word:<26}{BASELINE} {median_ci(b)}   {PROFILED} {median_ci(a)}   "
                             f"ratio {r:.2f}{ci}")
    lines += ["", f"profile of {PROFILED}'s forward pass (top ops; sum of per-call self time per forward):"]
    lines += result["profile"]
    return lines, best


def paired_baseline(label: str, times: dict[str, list[float]], plain: str) -> str:
    """The baseline row timed in the same configuration as `label` (text after " | "), else `plain`."""
    same = f"{BASELINE} | {label.split(' | ', 1)[-1]}"
    return same if same in times else plain


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m benchmarks.bench_deploy", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timed rounds per section")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--profile-runs", type=int, default=10)
    parser.add_argument("--out", type=output_file, default=None, help="also write the report here")
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=output_file, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.worker and "openvino" in args.runtimes and missing_tools(modules=("openvino",)):
        parser.error("--runtimes openvino needs the Python package openvino (pip install openvino), not found "
                     "here; leave openvino out of --runtimes")
    if args.worker:
        data = worker(args.worker, args.rounds, args.warmup, args.threads, args.profile_runs)
        args.worker_out.write_text(json.dumps(data))
        return 0
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"# Deployment latency, CPU, batch 1, 3x{HW[0]}x{HW[1]}, {args.threads} threads, one process per runtime")
    say(f"{platform.machine()}, {os.cpu_count()} cores; load average {_load():.2f} at start; {args.rounds} interleaved "
        f"rounds after {args.warmup} warm-up calls; ms as median [95% bootstrap CI]; ratios are medians of per-round "
        "ratios (paired) [95% CI]; max|diff| against the plain PyTorch model on the bundled sample")
    say()
    best: dict[str, dict[str, tuple[float, float, float]]] = {}
    for rt in args.runtimes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, "-m", "benchmarks.bench_deploy", "--worker", rt, "--worker-out", str(out),
                   "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--profile-runs", str(args.profile_runs)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
                say(f"## {rt}: failed: {why}")
                say()
                continue
            section, best[rt] = report(json.loads(out.read_text()), args.threads)
        for line in section:
            say(line)
        say()
    say("## Summary: each FeatherFace variant's best ratio to " + BASELINE + " in the same runtime")
    say(f"{'variant':<34}" + "".join(f"{rt:>22}" for rt in best))
    for v in (*FEATHERFACE, CONTROL, FLOOR):
        say(f"{v:<34}" + "".join(f"{best[rt][v][0]:8.2f} [{best[rt][v][1]:.2f}, {best[rt][v][2]:.2f}]"
                                 if v in best[rt] else f"{'-':>22}" for rt in best))
    say(f"(load average at the end {_load():.2f})")
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
