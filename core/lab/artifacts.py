"""Where results live on disk and what their files contain: the contract between train, eval and
the dashboard. Writes are atomic (temp file + rename) so a crash never loses or half-writes results.

Layout under a results root (the repo's `results/`, or `assets/demo/results/` for the shipped demo):
  comparison_table.csv        one row per (model, dataset, weights) evaluation: COMPARISON_COLUMNS
  latency_benchmark.csv       one row per model and latency session: LATENCY_COLUMNS
  latency_runs.csv            every timed run of those sessions (long format): LATENCY_RUN_COLUMNS
  reference_results.csv       published rows and targets, never mixed with measured rows
  eval/<model>__<dataset>__<tag>.json   full evaluation (PR curves, per-attribute AP)
Layout of a training run directory (under `runs/`, or `assets/demo/runs/`):
  <run>/run.json              RUN_FIELDS: model, dataset, seed, ...
  <run>/events.out.tfevents.* TensorBoard scalars, tags in TB_TAGS
  <run>/weights/{last,best,Final}.pth
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import config
from core.io.atomic import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)
from core.io.cli_paths import read_problem

COMPARISON_COLUMNS: tuple[str, ...] = (
    "model", "display_name", "params", "easy", "medium", "hard", "mAP", "latency_ms", "latency_device",
    "dataset", "dataset_path", "weights", "epochs", "seed", "date",
)
LATENCY_REQUIRED: tuple[str, ...] = (
    "date", "model", "device", "device_name", "threads", "torch_version", "input_h", "input_w", "batch",
    "runs", "warmup", "optimized", "mean_ms", "median_ms", "p90_ms", "std_ms", "fps", "overhead_vs_none_ms",
)
"""Columns every latency_benchmark.csv has, including files written before the uncertainty columns."""
LATENCY_COLUMNS: tuple[str, ...] = (
    *LATENCY_REQUIRED, "median_ci_low_ms", "median_ci_high_ms", "overhead_ci_low_ms", "overhead_ci_high_ms",
    "overhead_verdict", "session", "backend", "load_avg_1m", "cpu_count",
)
"""load_avg_1m and cpu_count: the machine's 1-minute load average at the session's start and the CPUs it is
shared by (eval.latency.lock); blank in sessions timed before they were recorded."""
LATENCY_RUN_COLUMNS: tuple[str, ...] = ("session", "round", "position", "model", "ms")
"""One timed forward pass: `round` of the interleaved session, `position` of the model within that round."""
# File names of the layout above: the only place they are typed.
COMPARISON_CSV = "comparison_table.csv"
LATENCY_CSV = "latency_benchmark.csv"
LATENCY_RUNS_CSV = "latency_runs.csv"
REFERENCE_CSV = "reference_results.csv"
EVAL_DIR = "eval"
RUN_JSON = "run.json"
MANIFEST_JSON = "manifest.json"
REFERENCE_COLUMNS: tuple[str, ...] = (
    "kind", "model", "display_name", "params", "easy", "medium", "hard", "mAP", "latency_ms", "source",
)
DATASETS: tuple[str, ...] = ("widerface", "synthetic")
# Default folders, relative to where a command runs (the repository root): each command's default input
# is where the command before it writes, so the README's workflow needs no paths.
DEFAULT_DATA = Path("data/synth")  # core.synth.generate writes here; train, eval.* read it
DEFAULT_RUNS = Path("runs")  # train writes <runs>/<run-name>/weights/Final.pth; eval.results finds them here
DEFAULT_RESULTS = Path("results")  # eval.results, eval.compare_ap, eval.conclusion commands and the dashboard
COMPARE_DIR = "compare_ap"  # <results>/compare_ap/<A>__<B>__<dataset>.json, read by eval.verdicts.conclusion
RUN_FIELDS: tuple[str, ...] = ("model", "dataset", "seed", "max_epoch", "batch_size", "lr", "optimizer", "created")

# TensorBoard scalar tags written by training and read by the dashboard. AP values are in percent.
TB_TAGS: dict[str, str] = {
    "step_loss": "train_step/loss_total",
    "step_loss_box": "train_step/loss_box",
    "step_loss_cls": "train_step/loss_cls",
    "step_loss_landmark": "train_step/loss_landmark",
    "step_lr": "train_step/lr",
    "train_loss": "train/loss_total",
    "train_loss_box": "train/loss_box",
    "train_loss_cls": "train/loss_cls",
    "train_loss_landmark": "train/loss_landmark",
    "val_loss": "val/loss_total",
    "val_loss_box": "val/loss_box",
    "val_loss_cls": "val/loss_cls",
    "val_loss_landmark": "val/loss_landmark",
    "lr": "train/lr",
    "ap_easy": "val/ap_easy",
    "ap_medium": "val/ap_medium",
    "ap_hard": "val/ap_hard",
    "epoch_time": "perf/epoch_time_s",
    "images_per_s": "perf/images_per_s",
    "val_time": "perf/val_time_s",  # rank-0 validation: under torchrun the other ranks wait this long
}

TARGETS = config.TARGETS  # project targets: kept in the registry (core.config), named here for results readers


class ResultsFileError(ValueError):
    """A results file is missing, empty or malformed; the message names the file and the problem."""


def detect_dataset(data_root: Path | str, override: str | None = None) -> str:
    """The dataset label: manifest.json "dataset" if present, else "widerface"; an override must agree."""
    manifest = Path(data_root) / MANIFEST_JSON
    found = "widerface"
    if manifest.is_file():
        try:
            found = str(json.loads(manifest.read_text(encoding="utf-8")).get("dataset") or "widerface")
        except (ValueError, AttributeError) as exc:
            raise ResultsFileError(f"{manifest}: unreadable manifest ({read_problem(exc)})") from None
    if override is not None and override != found:
        raise ValueError(f"--dataset {override!r} contradicts {manifest} (dataset {found!r})")
    if found not in DATASETS:
        raise ValueError(f"{manifest}: unknown dataset {found!r}; expected one of {list(DATASETS)}")
    return found


def atomic_write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@dataclass(frozen=True)
class RunInfo:
    """A training run directory and its run.json metadata."""

    path: Path
    name: str
    model: str
    dataset: str
    seed: int | None
    meta: dict[str, Any]


def write_run_info(run_dir: Path | str, meta: dict[str, Any]) -> None:
    missing = [f for f in ("model", "dataset") if f not in meta]
    if missing:
        raise ValueError(f"run metadata needs {missing}")
    atomic_write_json(Path(run_dir) / RUN_JSON, meta)


def find_runs(root: Path | str) -> tuple[list[RunInfo], list[str]]:
    """Every run under `root` (a folder holding run.json), plus warnings for unreadable run.json files."""
    root = Path(root)
    runs: list[RunInfo] = []
    warnings: list[str] = []
    if not root.is_dir():
        return runs, warnings
    for meta_path in sorted(root.rglob(RUN_JSON)):
        try:
            meta = json.loads(meta_path.read_text())
            runs.append(RunInfo(path=meta_path.parent, name=meta_path.parent.name, model=str(meta["model"]),
                                dataset=str(meta["dataset"]), seed=meta.get("seed"), meta=meta))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.append(f"{meta_path}: unreadable run metadata ({read_problem(exc)}), skipped")
    return runs, warnings


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
