"""Results files read back for a page or the conclusion: comparison, reference and latency CSVs and the per-row
evaluation JSON, each confined to its results folder, with what was unusable reported instead of raised."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import display_name, model_rank
from core.io.cli_paths import read_problem
from core.lab.artifacts import (
    COMPARISON_COLUMNS,
    COMPARISON_CSV,
    EVAL_DIR,
    LATENCY_COLUMNS,
    LATENCY_CSV,
    LATENCY_REQUIRED,
    LATENCY_RUN_COLUMNS,
    LATENCY_RUNS_CSV,
    REFERENCE_COLUMNS,
    REFERENCE_CSV,
    ResultsFileError,
)
from core.lab.roots import SourceError, confine, confined_files
from eval.runs.results_csv import read_results_csv

METRICS: tuple[str, ...] = ("easy", "medium", "hard", "mAP")


def _sort(frame: pd.DataFrame, *first: str) -> pd.DataFrame:
    keys = [*first, "_rank"]
    return (frame.assign(_rank=frame["model"].map(model_rank)).sort_values(keys, kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


@dataclass
class Loaded:
    """A table (possibly empty) plus what the page should say about it."""

    frame: pd.DataFrame
    errors: list[str] = field(default_factory=list)  # the file is unusable: st.error
    notes: list[str] = field(default_factory=list)  # worth knowing: st.warning / st.info
    missing: bool = False


def _numeric(frame: pd.DataFrame, columns: Iterable[str], path: Path, notes: list[str]) -> pd.DataFrame:
    """Coerce metric columns to numbers; rows with an unreadable value are dropped and counted."""
    frame = frame.copy()
    bad = pd.Series(False, index=frame.index)
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad |= values.isna() & frame[col].notna()
        frame[col] = values
    if bad.any():
        notes.append(f"{path}: {int(bad.sum())} row(s) with non-numeric metric values were skipped")
        frame = frame[~bad]
    return frame


def _refused(path: Path, root: Path | str) -> str | None:
    """Why `path` may not be read (a symlink or path resolving outside the results root, not a regular
    file), or None when it is fine or simply absent."""
    if not (path.is_symlink() or path.exists()):
        return None
    try:
        confine(path, root)
    except SourceError as exc:
        return str(exc)
    return None


def _read_table(path: Path, root: Path | str, columns: tuple[str, ...], required: tuple[str, ...],
                absent: str) -> pd.DataFrame | Loaded:
    """The validated CSV, or an empty `Loaded` (with `columns`) saying why there is none: refused path,
    absent file (note `absent`, missing=True) or unreadable file."""
    if refused := _refused(path, root):
        return Loaded(pd.DataFrame(columns=list(columns)), errors=[refused])
    if not path.is_file():
        return Loaded(pd.DataFrame(columns=list(columns)), missing=True, notes=[absent])
    try:
        return read_results_csv(path, required)
    except ResultsFileError as exc:
        return Loaded(pd.DataFrame(columns=list(columns)), errors=[str(exc)])


def load_comparison(results_root: Path | str) -> Loaded:
    """comparison_table.csv under the root, validated; errors/notes instead of exceptions."""
    path = Path(results_root) / COMPARISON_CSV
    frame = _read_table(path, results_root, COMPARISON_COLUMNS, COMPARISON_COLUMNS,
                        f"{path}: not found. Run `python -m eval.results --data DATA --weights-dir runs` "
                        "to evaluate the trained models.")
    if isinstance(frame, Loaded):
        return frame
    notes: list[str] = []
    frame = _numeric(frame, [*METRICS, "params", "latency_ms"], path, notes)
    frame["dataset"] = frame["dataset"].fillna("unknown").astype(str)
    frame["display_name"] = frame["display_name"].fillna(frame["model"].map(display_name))
    if frame.empty:
        notes.append(f"{path}: no rows yet")
    return Loaded(_sort(frame, "dataset"), notes=notes)


def load_reference(results_root: Path | str) -> Loaded:
    """reference_results.csv, or eval.verdicts.reference's built-in rows when it is absent or unusable."""
    from eval.verdicts.reference import KINDS, reference_frame

    path = Path(results_root) / REFERENCE_CSV
    if refused := _refused(path, results_root):
        return Loaded(reference_frame(), errors=[f"{refused}; using the built-in published/target rows instead"])
    if not path.is_file():
        return Loaded(reference_frame(), notes=[f"{path} not found: using the built-in published/target rows"])
    try:
        frame = read_results_csv(path, REFERENCE_COLUMNS)
    except ResultsFileError as exc:
        return Loaded(reference_frame(), errors=[f"{exc}; using the built-in published/target rows instead"])
    unknown = sorted(set(frame["kind"].astype(str)) - set(KINDS))
    if unknown:
        return Loaded(reference_frame(), errors=[f"{path}: unknown kind(s) {unknown}; using the built-in rows"])
    notes: list[str] = []
    return Loaded(_numeric(frame, [*METRICS, "params", "latency_ms"], path, notes), notes=notes)


def load_latency(results_root: Path | str) -> Loaded:
    """latency_benchmark.csv under the root (missing is normal: nothing benchmarked yet).

    Files written before the CI columns existed load with those columns blank (no verdicts).
    """
    path = Path(results_root) / LATENCY_CSV
    frame = _read_table(path, results_root, LATENCY_COLUMNS, LATENCY_REQUIRED,
                        f"{path}: not found (no latency saved yet)")
    if isinstance(frame, Loaded):
        return frame
    notes: list[str] = []
    if "overhead_ci_low_ms" not in frame.columns:
        notes.append(f"{path}: written before confidence intervals were recorded; its differences carry no verdict")
    frame = frame.reindex(columns=list(dict.fromkeys([*LATENCY_COLUMNS, *frame.columns])))
    frame = _numeric(frame, ["mean_ms", "median_ms", "p90_ms", "std_ms", "fps", "overhead_vs_none_ms",
                             "median_ci_low_ms", "median_ci_high_ms", "overhead_ci_low_ms", "overhead_ci_high_ms",
                             "load_avg_1m", "cpu_count"],
                     path, notes)
    frame["overhead_verdict"] = frame["overhead_verdict"].fillna("").astype(str)
    return Loaded(frame, notes=notes)


def load_latency_runs(results_root: Path | str) -> Loaded:
    """latency_runs.csv (every timed run, long format) under the root; missing for older results."""
    path = Path(results_root) / LATENCY_RUNS_CSV
    frame = _read_table(path, results_root, LATENCY_RUN_COLUMNS, LATENCY_RUN_COLUMNS,
                        f"{path}: not found (no per-run timings saved)")
    if isinstance(frame, Loaded):
        return frame
    notes: list[str] = []
    frame = _numeric(frame, ["round", "position", "ms"], path, notes)
    frame["session"] = frame["session"].astype(str)
    return Loaded(frame, notes=notes)


@dataclass(frozen=True)
class EvalRecord:
    """One results/eval/<model>__<dataset>__<tag>.json: PR curves per setting and per-attribute AP."""

    path: Path
    model: str
    dataset: str
    tag: str
    weights: str
    settings: dict[str, dict[str, Any]]
    breakdown: dict[str, dict[str, dict[str, Any]]]

    @property
    def label(self) -> str:
        return f"{display_name(self.model)} · {self.tag}"


def load_eval_records(results_root: Path | str) -> tuple[list[EvalRecord], list[str]]:
    """Every readable eval JSON under `<root>/eval/`; each unreadable one, or one resolving outside the
    results root (a symlink to a file elsewhere), gives a warning."""
    paths, warnings = confined_files(Path(results_root) / EVAL_DIR, "*.json", results_root)
    records = []
    for path in paths:
        try:
            records.append(parse_eval_record(path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.append(f"{path}: unreadable evaluation file ({read_problem(exc)}), skipped")
    return records, warnings


def parse_eval_record(path: Path, payload: Mapping[str, Any]) -> EvalRecord:
    """Accepts eval.results' files ({..., "evaluation": {...}}) and bare `WiderEvalResult.to_dict()` ones."""
    parts = path.stem.split("__")
    evaluation = payload.get("evaluation", payload)
    settings = evaluation["settings"]
    for name, s in settings.items():
        if len(s["precision"]) != len(s["recall"]):
            raise ValueError(f"setting {name}: precision and recall lengths differ")
    return EvalRecord(
        path=path,
        model=str(payload.get("model") or parts[0]),
        dataset=str(payload.get("dataset") or (parts[1] if len(parts) > 1 else "unknown")),
        tag=parts[2] if len(parts) > 2 else path.stem,
        weights=str(payload.get("weights") or ""),
        settings=dict(settings),
        breakdown=dict(evaluation.get("breakdown") or {}),
    )
