"""Where the dashboard may read from: data roots (CLI/env/defaults), weights discovery, safe paths.

Pure Python (no streamlit) so the rules are unit-tested: the UI never takes a free-text path, it only
offers these roots and the files found under them, and every chosen file is re-checked to resolve
inside an allowed root (a symlink pointing elsewhere is refused).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.config import MODEL_CONFIGS

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_ENV = "FEATHERFACE_RESULTS_DIR"
RUNS_ENV = "FEATHERFACE_RUNS_DIR"
RESULT_MARKERS: tuple[str, ...] = ("comparison_table.csv", "latency_benchmark.csv")
CHECKPOINT_SUFFIX = ".pth"

WeightsKind = Literal["demo", "checkpoint", "random"]


class SourceError(ValueError):
    """A path is outside the allowed roots or not a usable file; the message says which."""


@dataclass(frozen=True)
class Roots:
    """The only folders the dashboard reads: results CSVs, training runs, checkpoint roots, shipped demo."""

    results: Path
    runs: tuple[Path, ...]
    weights: tuple[Path, ...]
    demo: Path

    @property
    def all(self) -> tuple[Path, ...]:
        """Every allowed root, for `ensure_within`."""
        return (self.results, *self.runs, *self.weights, self.demo)

    @property
    def demo_weights(self) -> Path:
        return self.demo / "weights"

    @property
    def demo_manifest(self) -> Path:
        return self.demo / "manifest.json"


def resolve_roots(
    argv: Sequence[str], env: Mapping[str, str], repo_root: Path | str = REPO_ROOT
) -> Roots:
    """Roots from `-- --results-dir DIR --runs-dir DIR`, else FEATHERFACE_RESULTS_DIR / _RUNS_DIR, else defaults.

    Default results root: `<repo>/results` if it already holds a results CSV, otherwise the shipped
    `<repo>/assets/demo/results`. A runs dir given by the user replaces `<repo>/runs`; the shipped demo
    runs stay listed (and labelled as demo). Relative paths are taken from the repository root.
    Unknown arguments are ignored (streamlit and pytest put their own in sys.argv).
    """
    repo = Path(repo_root).resolve()
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--runs-dir", default=None)
    args, _ = parser.parse_known_args(list(argv))
    demo = repo / "assets" / "demo"

    results_arg = args.results_dir or env.get(RESULTS_ENV) or None
    if results_arg:
        results = _absolute(results_arg, repo)
    else:
        local = repo / "results"
        results = local if any((local / m).is_file() for m in RESULT_MARKERS) else demo / "results"

    runs_arg = args.runs_dir or env.get(RUNS_ENV) or None
    user_runs = _absolute(runs_arg, repo) if runs_arg else repo / "runs"
    runs = _unique((user_runs, demo / "runs"))
    weights = _unique((repo / "weights", user_runs, demo))
    return Roots(results=results, runs=runs, weights=weights, demo=demo)


def _absolute(value: str, repo: Path) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else repo / path).resolve()


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    seen: dict[Path, None] = {}
    for p in paths:
        seen.setdefault(p.resolve(), None)
    return tuple(seen)


def is_within(path: Path | str, roots: Iterable[Path]) -> bool:
    """True if `path`, with every symlink resolved, lies inside one of `roots` (also resolved)."""
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    for root in roots:
        try:
            real_root = Path(root).resolve()
        except (OSError, RuntimeError):
            continue
        if real == real_root or real_root in real.parents:
            return True
    return False


def ensure_within(path: Path | str, roots: Iterable[Path]) -> Path:
    """The resolved path if it is an existing file inside an allowed root; `SourceError` otherwise."""
    roots = tuple(roots)
    if not is_within(path, roots):
        raise SourceError(f"refusing {path}: it does not resolve to a file inside the allowed folders "
                          f"{[str(r) for r in roots]}")
    real = Path(path).resolve()
    if not real.is_file():
        raise SourceError(f"refusing {path}: not a regular file")
    return real


def iter_files(root: Path, suffix: str) -> list[Path]:
    """Files with `suffix` under `root`, not following directory symlinks, hidden/temp files skipped.

    Symlinked files are kept only if they resolve inside `root` (escapes are dropped silently here and
    refused again by `ensure_within` when a file is used).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("__pycache__", ".venv"))
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(suffix):
                continue
            path = Path(dirpath) / name
            if is_within(path, (root,)):
                found.append(path)
    return found


@dataclass(frozen=True)
class WeightsOption:
    """One choice in the weights picker, always labelled with where it comes from.

    `key` is stable across reruns (used as widget value and cache key); `path` is None for random init.
    """

    model: str
    kind: WeightsKind
    label: str
    path: Path | None = None
    dataset: str | None = None
    epochs: int | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}" if self.path is not None else f"{self.kind}:{self.model}"

    @property
    def trained(self) -> bool:
        return self.kind != "random"


def random_option(model: str) -> WeightsOption:
    return WeightsOption(model=model, kind="random", label="random init — untrained")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a readable checkpoint says about itself (its embedded model name and training extras)."""

    path: Path
    model: str
    dataset: str | None
    epochs: int | None


@dataclass
class CheckpointScan:
    """Every *.pth under the weights roots: readable ones, and a warning for each skipped file."""

    found: list[CheckpointInfo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scan_checkpoints(roots: Roots) -> CheckpointScan:
    """Read the embedded name of every checkpoint under the weights roots (each file once)."""
    from core.checkpoint import CheckpointError, read_checkpoint  # torch import only when scanning

    scan = CheckpointScan()
    seen: set[Path] = set()
    for root in roots.weights:
        for path in iter_files(root, CHECKPOINT_SUFFIX):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                data = read_checkpoint(path)
            except CheckpointError as exc:
                scan.skipped.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - an odd file must never break the sidebar
                scan.skipped.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
                continue
            name = data.get("model_name")
            if not isinstance(name, str):
                scan.skipped.append(f"{path}: checkpoint has no model name")
                continue
            scan.found.append(CheckpointInfo(path=path, model=name, dataset=_str_or_none(data.get("dataset")),
                                             epochs=_epochs(data)))
    return scan


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _epochs(data: Mapping[str, Any]) -> int | None:
    """Epochs trained: `epochs` if stored, else `epoch` (train/ numbers epochs from 1, so it is the count)."""
    for key in ("epochs", "epoch"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def read_manifest(roots: Roots) -> dict[str, Any] | None:
    """The shipped demo's manifest.json as a dict, or None when absent/unreadable."""
    path = roots.demo_manifest
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_dataset(manifest: Mapping[str, Any] | None) -> str:
    """The dataset label of the demo artefacts; "synthetic" unless the manifest says otherwise."""
    if manifest:
        for key in ("dataset_label", "dataset"):
            if isinstance(manifest.get(key), str) and manifest[key]:
                return manifest[key]
    return "synthetic"


def manifest_epochs(manifest: Mapping[str, Any] | None, model: str) -> int | None:
    """Epochs of the demo weights of `model`: manifest["models"][model]["epochs"] or manifest["epochs"]."""
    if not manifest:
        return None
    models = manifest.get("models")
    if isinstance(models, Mapping) and isinstance(models.get(model), Mapping):
        value = models[model].get("epochs", models[model].get("max_epoch"))
        if isinstance(value, int):
            return value
    value = manifest.get("epochs", manifest.get("max_epoch"))
    return value if isinstance(value, int) else None


def demo_label(dataset: str | None, epochs: int | None) -> str:
    parts = [dataset or "synthetic"] + ([f"{epochs} epochs"] if epochs is not None else [])
    return f"demo ({', '.join(parts)})"


def discover_weights(
    model_name: str, roots: Roots, scan: CheckpointScan | None = None, manifest: Mapping[str, Any] | None = None
) -> list[WeightsOption]:
    """Options for `model_name`: shipped demo weights first, then matching checkpoints, then random init.

    Checkpoints are matched on their embedded model name (a file named cbam.pth that holds another
    variant is not offered for cbam). Pass `scan` to reuse one scan for several models; unreadable
    files are counted in `scan.skipped`.
    """
    if model_name not in MODEL_CONFIGS:
        raise KeyError(f"unknown model {model_name!r}; choose one of {sorted(MODEL_CONFIGS)}")
    scan = scan if scan is not None else scan_checkpoints(roots)
    manifest = manifest if manifest is not None else read_manifest(roots)
    demo_file = (roots.demo_weights / f"{model_name}{CHECKPOINT_SUFFIX}").resolve()
    options: list[WeightsOption] = []
    others: list[WeightsOption] = []
    for info in scan.found:
        if info.model != model_name:
            continue
        if info.path.resolve() == demo_file:
            dataset = info.dataset or manifest_dataset(manifest)
            epochs = manifest_epochs(manifest, model_name) or info.epochs
            options.append(WeightsOption(model=model_name, kind="demo", label=demo_label(dataset, epochs),
                                         path=info.path, dataset=dataset, epochs=epochs))
        else:
            others.append(WeightsOption(model=model_name, kind="checkpoint", path=info.path,
                                        label=checkpoint_label(info, roots), dataset=info.dataset,
                                        epochs=info.epochs))
    return options + others + [random_option(model_name)]


def checkpoint_label(info: CheckpointInfo, roots: Roots) -> str:
    """Path relative to the repository (or to its root when outside it), plus dataset/epochs when known."""
    label = display_path(info.path, roots)
    extras = [x for x in (info.dataset, f"{info.epochs} epochs" if info.epochs is not None else None) if x]
    return f"{label} ({', '.join(extras)})" if extras else label


def display_path(path: Path, roots: Roots) -> str:
    """A short, stable name for a file: relative to the repo root when inside it, else to its root."""
    repo = roots.demo.parent.parent
    path = Path(path)
    for base in (repo, *roots.weights, *roots.runs, roots.results):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return rel.as_posix() if base == repo else f"{base.name}/{rel.as_posix()}"
    return path.name


def load_inference_model(option: WeightsOption, roots: Roots, seed: int = 0, fold_bn: bool = True):
    """The eval-mode model for `option` (BN folded unless `fold_bn=False`, e.g. to report the parameter
    count of the trained architecture); `CheckpointError`/`SourceError` with a clear message.

    Random init is seeded so every rerun (and every page) shows the same untrained model.
    """
    import torch

    from core.checkpoint import load_checkpoint
    from core.factory import build_model
    from core.inference import prepare_for_inference

    if option.kind == "random" or option.path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(option.model)
    else:
        path = ensure_within(option.path, roots.weights)
        model, _ = load_checkpoint(path, expected_name=option.model)
    return prepare_for_inference(model.eval(), fold_bn=fold_bn)


RESULT_FILES: dict[str, str] = {
    "comparison_table.csv": "AP table (easy/medium/hard/mAP) per model",
    "latency_benchmark.csv": "latency per model and device",
    "reference_results.csv": "published reference numbers (never mixed with measured rows)",
}


@dataclass(frozen=True)
class Missing:
    """Something the dashboard would show if it existed, and the command that produces it."""

    what: str
    command: str


@dataclass
class Inventory:
    """What was found under the roots; the Overview page renders it as is."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    run_warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    eval_files: int = 0
    weights: dict[str, list[WeightsOption]] = field(default_factory=dict)
    skipped_checkpoints: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    missing: list[Missing] = field(default_factory=list)

    @property
    def demo_dataset(self) -> str | None:
        return manifest_dataset(self.manifest) if self.manifest is not None else None


def dataset_label(dataset: str | None) -> str:
    """Human label that never lets synthetic numbers pass for WIDERFace numbers."""
    if not dataset:
        return "unknown dataset"
    low = str(dataset).lower()
    if low == "widerface":
        return "WIDERFace val"
    if low.startswith("synth"):
        return f"{dataset} (generated faces, NOT WIDERFace)"
    return str(dataset)


def _csv_summary(path: Path) -> dict[str, Any]:
    """Rows and datasets of a results CSV, without judging its schema (the Results page does that)."""
    import pandas as pd

    info: dict[str, Any] = {"file": path.name, "path": path, "rows": None, "datasets": [], "error": None}
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - reported in the table, never raised
        info["error"] = f"unreadable ({type(exc).__name__})"
        return info
    info["rows"] = len(frame)
    for col in ("dataset", "kind"):
        if col in frame.columns:
            info["datasets"] = sorted({str(v) for v in frame[col].dropna().unique()})
            break
    return info


def build_inventory(roots: Roots, scan: CheckpointScan | None = None) -> Inventory:
    """Runs, results CSVs, weights per compared model and the demo manifest; plus what is missing."""
    from core.artifacts import find_runs
    from core.config import COMPARED_MODELS

    inv = Inventory(manifest=read_manifest(roots))
    for root in roots.runs:
        found, warns = find_runs(root)
        inv.run_warnings += warns
        demo = root.resolve() == (roots.demo / "runs").resolve()
        for run in found:
            inv.runs.append({"run": run.name, "model": run.model, "dataset": dataset_label(run.dataset),
                             "seed": run.seed, "source": "demo" if demo else display_path(run.path, roots),
                             "epochs": run.meta.get("max_epoch")})
    for name in RESULT_FILES:
        path = roots.results / name
        if path.is_file():
            inv.results.append(_csv_summary(path))
    eval_dir = roots.results / "eval"
    inv.eval_files = len(list(eval_dir.glob("*.json"))) if eval_dir.is_dir() else 0
    scan = scan if scan is not None else scan_checkpoints(roots)
    inv.skipped_checkpoints = list(scan.skipped)
    inv.weights = {m: discover_weights(m, roots, scan=scan, manifest=inv.manifest) for m in COMPARED_MODELS}
    inv.missing = _missing(roots, inv)
    return inv


def _missing(roots: Roots, inv: Inventory) -> list[Missing]:
    out: list[Missing] = []
    have = {r["file"] for r in inv.results}
    untrained = [m for m, opts in inv.weights.items() if not any(o.trained for o in opts)]
    if not any(r["source"] != "demo" for r in inv.runs):
        out.append(Missing("training runs of your own (runs/)",
                           "python -m core.data.synth --out data/synthetic  # or a WIDERFace copy\n"
                           "python -m train --network eca_cbam --data data/synthetic --max-epoch 30 --out runs"))
    if untrained:
        loop = " ".join(untrained)
        out.append(Missing(f"trained weights for {', '.join(untrained)} (only random init available)",
                           f"for m in {loop}; do python -m train --network $m --data <dataset root> --out runs; done"))
    if "comparison_table.csv" not in have:
        out.append(Missing("AP comparison table (comparison_table.csv)",
                           "python -m eval.results --data <dataset root> --weights-dir <weights folder> --out results"))
    if "latency_benchmark.csv" not in have:
        out.append(Missing("latency benchmark (latency_benchmark.csv)",
                           "python -m eval.latency --out results/latency_benchmark.csv"))
    if "reference_results.csv" not in have:
        out.append(Missing("published reference numbers (reference_results.csv)",
                           "python -m eval.reference --out results/reference_results.csv"))
    datasets = {d.lower() for r in inv.results if r["file"] == "comparison_table.csv" for d in r["datasets"]}
    if "widerface" not in datasets:
        out.append(Missing("WIDERFace numbers (every measured number found is on another dataset)",
                           "python -m eval.results --data <WIDER FACE root> --dataset widerface "
                           "--weights-dir <weights folder> --out results"))
    if inv.manifest is None:
        out.append(Missing(f"shipped demo artefacts ({display_path(roots.demo_manifest, roots)}): not in this "
                           "checkout, so pages fall back to your own runs/results, or to random-init models", ""))
    return out
