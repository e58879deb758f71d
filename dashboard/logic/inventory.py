"""The Overview page's inventory: runs, results files, weights per model and the demo manifest found
under the roots, and for everything missing the command that produces it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import BASELINE_MODEL, COMPARED_MODELS
from core.lab.artifacts import COMPARISON_CSV, EVAL_DIR, LATENCY_CSV, REFERENCE_CSV, dataset_label
from core.lab.roots import Roots, SourceError, confine, confined_files, display_path
from core.lab.run_index import index_runs
from dashboard.logic.weights import (
    CheckpointScan,
    WeightsOption,
    discover_weights,
    manifest_dataset,
    read_manifest,
    scan_checkpoints,
)
from eval.runs.checkpoints import is_real_dataset

RESULT_FILES: dict[str, str] = {
    COMPARISON_CSV: "AP table (easy/medium/hard/mAP) per model",
    LATENCY_CSV: "latency per model and device",
    REFERENCE_CSV: "published reference numbers (never mixed with measured rows)",
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
    skipped_files: list[str] = field(default_factory=list)  # results files refused (outside the results folder)
    manifest: dict[str, Any] | None = None
    missing: list[Missing] = field(default_factory=list)

    @property
    def demo_dataset(self) -> str | None:
        return manifest_dataset(self.manifest) if self.manifest is not None else None


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
    inv = Inventory(manifest=read_manifest(roots))
    index = index_runs(roots.runs)
    inv.run_warnings += index.notes
    shipped = {(roots.demo / "runs").resolve(): "demo"}
    if roots.reference is not None:
        shipped[(roots.reference / "runs").resolve()] = "reference"
    for root, run in index.runs:
        source = shipped.get(root.resolve())
        if source == "reference" and run.meta.get("trained_by"):
            source = f"reference, trained by {run.meta['trained_by']}"
        dataset = "WIDER FACE (train)" if is_real_dataset(run.dataset) else dataset_label(run.dataset)
        inv.runs.append({"run": run.name, "model": run.model, "dataset": dataset, "seed": run.seed,
                         "source": source or display_path(run.path, roots), "epochs": run.meta.get("max_epoch"),
                         "shipped": source is not None})
    for name in RESULT_FILES:
        path = roots.results / name
        if not (path.is_file() or path.is_symlink()):
            continue
        try:
            confine(path, roots.results)
        except SourceError as exc:
            inv.results.append({"file": name, "path": path, "rows": None, "datasets": [], "error": str(exc)})
            inv.skipped_files.append(str(exc))
            continue
        inv.results.append(_csv_summary(path))
    eval_files, skipped = confined_files(roots.results / EVAL_DIR, "*.json", roots.results)
    inv.eval_files = len(eval_files)
    inv.skipped_files += skipped
    scan = scan if scan is not None else scan_checkpoints(roots)
    inv.skipped_checkpoints = list(scan.skipped)
    inv.weights = {m: discover_weights(m, roots, scan=scan, manifest=inv.manifest)
                   for m in (*COMPARED_MODELS, BASELINE_MODEL)}
    inv.missing = _missing(roots, inv)
    return inv


def _missing(roots: Roots, inv: Inventory) -> list[Missing]:
    out: list[Missing] = []
    have = {r["file"] for r in inv.results}
    untrained = [m for m, opts in inv.weights.items() if m in COMPARED_MODELS and not any(o.trained for o in opts)]
    if not any(not r["shipped"] for r in inv.runs):
        out.append(Missing("training runs of your own (runs/)",
                           ".venv/bin/python -m core.data.synth  # -> data/synth; or a WIDERFace copy\n"
                           ".venv/bin/python -m train --network eca_cbam --run-name eca_cbam_s0 --max-epoch 30"))
    if untrained:
        loop = " ".join(untrained)
        out.append(Missing(f"trained weights for {', '.join(untrained)} (only random init available)",
                           f"for m in {loop}; do .venv/bin/python -m train --network $m --run-name ${{m}}_s0; done"))
    if COMPARISON_CSV not in have:
        out.append(Missing("AP comparison table (comparison_table.csv)",
                           ".venv/bin/python -m eval.results  # data/synth + runs/ -> results/"))
    if LATENCY_CSV not in have:
        out.append(Missing("latency benchmark (latency_benchmark.csv)",
                           ".venv/bin/python -m eval.latency --out results/latency_benchmark.csv"))
    if REFERENCE_CSV not in have:
        out.append(Missing("published reference numbers (reference_results.csv)",
                           ".venv/bin/python -m eval.reference --out results/reference_results.csv"))
    datasets = {d.lower() for r in inv.results if r["file"] == COMPARISON_CSV for d in r["datasets"]}
    if "widerface" not in datasets:
        out.append(Missing("WIDERFace numbers (every measured number found is on another dataset)",
                           ".venv/bin/python -m eval.results --data data/widerface --dataset widerface"))
    if inv.manifest is None:
        out.append(Missing(f"shipped demo artefacts ({display_path(roots.demo_manifest, roots)}): not in this "
                           "checkout, so pages fall back to your own runs/results, or to random-init models", ""))
    return out
