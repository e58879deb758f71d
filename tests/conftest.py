"""Shared fixtures: small deterministic models and images; every test runs on CPU."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.detector import FeatherFace
from core.factory import build_model
from core.layers.deform_conv import ModulatedDeformConv2d
from eval.latency.lock import LOCK_ENV
from eval.runs.event_cache import CACHE_ENV


def find_real_wider_gt() -> Path:
    """The real WIDER FACE val ground truth shipped beside the repo (`../shared/widerface_val_gt`), or
    where WIDER_VAL_GT points; tests that need it skip with a reason when it is absent."""
    candidates = [os.environ.get("WIDER_VAL_GT"), ROOT.parent / "shared" / "widerface_val_gt",
                  "/work/shared/widerface_val_gt"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "wider_face_val.mat").is_file():
            return Path(candidate)
    return ROOT.parent / "shared" / "widerface_val_gt"


ROOT = Path(__file__).resolve().parents[1]
REAL_GT = find_real_wider_gt()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _session_timing_lock(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timings in tests queue on this test session's own lock file, not the machine's (eval.latency.lock):
    a dashboard, or another checkout's tests, timing at the same moment would otherwise hold them up."""
    monkeypatch.setenv(LOCK_ENV, str(tmp_path_factory.getbasetemp() / "timing.lock"))


@pytest.fixture(autouse=True)
def _session_app_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's cache folder (decoded event files, parameter totals) is this test session's own, not the
    user's ~/.cache: pages under test never read what another run left there."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "app_cache"))


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BN layers non-trivial statistics and DCN offset convs non-zero weights (as after training),
    so eval-mode tests, BN folding and the DCN kernels are really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
        if isinstance(m, ModulatedDeformConv2d):
            m.offset_mask.weight.data.normal_(0, 0.05, generator=gen)
    return model


def realistic_model(name: str, seed: int = 0) -> FeatherFace:
    """A seeded random-init eval-mode model with trained-looking BN statistics and DCN offsets
    (shared with benchmarks/bench_model_latency.py)."""
    torch.manual_seed(seed)
    return randomize_batchnorm(build_model(name).eval(), seed)


@pytest.fixture
def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def models() -> dict[str, torch.nn.Module]:
    return {name: build_model(name).eval() for name in ("cbam", "eca_cbam", "eca_cbam_parallel", "none")}


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for training tests: on a small shared CPU, OpenMP threads waiting on each
    other cost 10x. Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def slurm_unavailable() -> str | None:
    """Why the tests marked ``slurm`` cannot run here (None: ``sinfo`` answers with a usable node).

    CI starts a one-node cluster with ../shared/tools/slurm-single-node.sh where it is root; elsewhere
    these tests skip with this reason.
    """
    missing = [tool for tool in ("sinfo", "sbatch", "squeue", "srun", "scancel") if shutil.which(tool) is None]
    if missing:
        return f"no SLURM cluster here ({', '.join(missing)} not on PATH; ../shared/tools/slurm-single-node.sh " \
               "start builds one as root)"
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--format", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo did not answer ({exc})"
    states = proc.stdout.split()
    if proc.returncode != 0 or not set(states) & {"idle", "mixed", "allocated", "completing"}:
        return f"sinfo answers no usable node (exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:200]})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slurm`` run against a real cluster only where ``sinfo`` answers; else skip, saying why."""
    marked = [item for item in items if item.get_closest_marker("slurm")]
    reason = slurm_unavailable() if marked else None
    for item in marked if reason else []:
        item.add_marker(pytest.mark.skip(reason=reason))


def exit_status(main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """A CLI's exit status whether its main returns it or argparse exits: bad paths and missing tools are
    refused by the parser (core.io.cli_paths), before any work, with SystemExit(2)."""
    try:
        return main(argv) or 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
