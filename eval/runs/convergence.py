"""Training curves of the runs under the runs roots: loading, smoothing, seed bands, stability.

The event files themselves are read (incrementally, damage reported) by `eval.runs.event_files`.
Pure Python/pandas/plotly: the Convergence page only wires widgets to these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.config import display_name
from core.lab.artifacts import RUN_JSON, TB_TAGS, RunInfo, dataset_label
from core.lab.roots import confined_files, root_label
from core.lab.run_index import index_runs
from eval.runs.checkpoints import dataset_words
from eval.runs.event_cache import EventCache, FileRead, default_cache
from eval.runs.event_files import EVENT_GLOB, SCALAR_COLUMNS
from eval.runs.tfevents.scalars import Scalars, concat_scalars

RUN_COLUMNS: tuple[str, ...] = ("run", "model", "display_name", "dataset", "seed", "origin", "root", "path",
                                "event_files", "last_epoch", "points", "status")
DATASET_DASH: dict[str, str] = {"widerface": "solid", "synthetic": "dot"}
MEAN_OF_SEEDS_ABOVE = 6
"""Beyond this many runs the page opens on one line per model and dataset (mean of seeds with a band):
15 overlaid runs make a legend as tall as the plot and lines nobody can tell apart."""

# The seed source's TensorBoard tags (fokouarnaud/FeatherFace train_eca_cbam.py: per-batch losses every 50
# batches at global_step = epoch * batches + i, `cfg['loc_weight'] * loss_l + loss_c + loss_landm` as here;
# Epoch/* at the 1-based epoch) -> the tags this project logs, so its log fills the same panels.
SOURCE_TAGS: dict[str, str] = {
    "Loss/Total": TB_TAGS["step_loss"],
    "Loss/Localization": TB_TAGS["step_loss_box"],
    "Loss/Classification": TB_TAGS["step_loss_cls"],
    "Loss/Landmarks": TB_TAGS["step_loss_landmark"],
    "Learning_Rate": TB_TAGS["step_lr"],
    "Epoch/Loss": TB_TAGS["train_loss"],
    "Epoch/Learning_Rate": TB_TAGS["lr"],
}
STEP_PREFIX = "train_step/"

# What the page offers, in display order: label -> TensorBoard tag (epoch-level except the step ones).
CURVES: dict[str, str] = {
    "Train loss (total)": TB_TAGS["train_loss"],
    "Val loss (total)": TB_TAGS["val_loss"],
    "Train loss: box": TB_TAGS["train_loss_box"],
    "Train loss: class": TB_TAGS["train_loss_cls"],
    "Train loss: landmark": TB_TAGS["train_loss_landmark"],
    "Val loss: box": TB_TAGS["val_loss_box"],
    "Val loss: class": TB_TAGS["val_loss_cls"],
    "Val loss: landmark": TB_TAGS["val_loss_landmark"],
    "Learning rate": TB_TAGS["lr"],
    "Val AP easy (%)": TB_TAGS["ap_easy"],
    "Val AP medium (%)": TB_TAGS["ap_medium"],
    "Val AP hard (%)": TB_TAGS["ap_hard"],
    "Train loss per step": TB_TAGS["step_loss"],
    "Learning rate per step": TB_TAGS["step_lr"],
    "Train loss per step: box": TB_TAGS["step_loss_box"],
    "Train loss per step: class": TB_TAGS["step_loss_cls"],
    "Train loss per step: landmark": TB_TAGS["step_loss_landmark"],
    "Epoch time (s)": TB_TAGS["epoch_time"],
    "Training images per second": TB_TAGS["images_per_s"],
    "Validation time (s)": TB_TAGS["val_time"],
}
DEFAULT_CURVES: tuple[str, ...] = ("Train loss (total)", "Learning rate", "Val loss (total)", "Val AP hard (%)")
Direction = Literal["below", "above"]
Band = Literal["minmax", "std"]


@dataclass(frozen=True)
class ConvergenceData:
    """All runs found under the roots: one row per run, long-format scalars, and every warning.

    `scalars` columns: run, model, dataset (categorical, categories in run order), seed (nullable int),
    tag (categorical), step, value, wall_time; rows grouped by run, then tag, then step ascending.
    """

    runs: pd.DataFrame  # RUN_COLUMNS
    scalars: pd.DataFrame
    warnings: tuple[str, ...]

    @property
    def tags(self) -> list[str]:
        """Every tag at least one run logged, sorted."""
        if self.scalars.empty:
            return []
        tag = self.scalars["tag"]
        if isinstance(tag.dtype, pd.CategoricalDtype):
            seen = np.bincount(tag.cat.codes.to_numpy() + 1, minlength=len(tag.cat.categories) + 1)[1:]
            return sorted(str(t) for t, n in zip(tag.cat.categories, seen, strict=True) if n)
        return sorted(map(str, tag.unique()))


def run_names(found: Sequence[tuple[Path, RunInfo]]) -> list[str]:
    """`<root label>/<run folder relative to its root>` for every run, e.g. `study350/cbam_s3`, `demo/cbam_s0`:
    one rule, so names are stable when other roots come and go; a clash (two roots with one name) gets
    ` (2)`, ` (3)` in root order."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for root, info in found:
        rel = info.path.relative_to(root).as_posix() if info.path != root else ""
        name = f"{root_label(root)}/{rel}" if rel else root_label(root)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


def run_origin(info: RunInfo, root: Path) -> str:
    """Where a run's curves come from, as the page labels it. A run trained elsewhere says so in its run.json
    (`trained_by`, as assets/reference ships the source's log): "trained on WIDER FACE by
    fokouarnaud/FeatherFace"; else its `origin`; else the shipped demo or the user's own runs, by dataset."""
    trained_by = info.meta.get("trained_by")
    if isinstance(trained_by, str) and trained_by.strip():
        return f"trained on {dataset_words(info.dataset)} by {trained_by.strip()}"
    origin = info.meta.get("origin")
    if isinstance(origin, str) and origin.strip():
        return origin.strip()
    if root_label(root) == "demo":
        return "shipped demo run, synthetic faces (not WIDER FACE)" if not is_real(info.dataset) else "shipped demo run"
    return f"trained here on {dataset_label(info.dataset)}"


def is_real(dataset: object) -> bool:
    """Real faces (WIDER FACE or any dataset not generated): shown before synthetic runs."""
    return not str(dataset).lower().startswith("synth")


def _run_scalars(reads: list[FileRead]) -> Scalars:
    """One run's scalars from its files in time order: a resumed writer voids what earlier files logged at
    or after its purge step, tags of the seed source are renamed, and a (tag, step) logged twice keeps the
    latest value. Sorted by tag, then step."""
    parts: list[Scalars] = []
    for r in reads:
        if r.purge_step is not None:
            parts = [p.take(p.step < r.purge_step) for p in parts]
        parts.append(r.arrays)
    s = concat_scalars(parts)
    if not len(s):
        return s
    if any(t in SOURCE_TAGS for t in s.tags):
        renamed = [SOURCE_TAGS.get(t, t) for t in s.tags]
        vocab: dict[str, int] = {}
        lut = np.array([vocab.setdefault(t, len(vocab)) for t in renamed], dtype=np.int32)
        s = Scalars(tuple(vocab), lut[s.code], s.step, s.value, s.wall_time)
    # By tag, then step, then wall time (equal wall times keep file order). Files are written in time order,
    # so a stable sort by tag alone (a radix sort on small codes) usually is that order already.
    order = np.argsort(s.code.astype(np.int16) if len(s.tags) < 2**15 else s.code, kind="stable")
    code, step, wall = s.code[order], s.step[order], s.wall_time[order]
    same = code[1:] == code[:-1]
    if not np.all(~same | (step[1:] > step[:-1]) | ((step[1:] == step[:-1]) & (wall[1:] >= wall[:-1]))):
        order = np.lexsort((s.wall_time, s.step, s.code))
    s = s.take(order)
    last = np.r_[(s.code[1:] != s.code[:-1]) | (s.step[1:] != s.step[:-1]), True]
    return s if last.all() else s.take(last)


def load_convergence(roots: Iterable[Path | str], cache: EventCache | None = None) -> ConvergenceData:
    """Read every run (folder with run.json) under `roots` once (core.lab.run_index); missing roots are simply
    empty. Event files resolving outside the run's root are skipped with a warning. Real runs come first."""
    cache = cache or default_cache()
    index = index_runs(roots)
    found = index.runs
    warnings: list[str] = index.notes
    rows, arrays = [], []
    for (root, info), run_id in zip(found, run_names(found), strict=True):
        files, skipped = confined_files(info.path, EVENT_GLOB, root, recursive=True)
        warnings += skipped
        reads = sorted((cache.read(p) for p in files), key=lambda r: (r.first_wall_time, r.path.name))
        problems = [r.warning for r in reads if r.warning]
        warnings += problems
        s = _run_scalars(reads)
        epoch_codes = [i for i, t in enumerate(s.tags) if not t.startswith(STEP_PREFIX)]
        epoch_steps = s.step[np.isin(s.code, epoch_codes)]
        status = "no event file" if not files else ("; ".join(problems) if problems else "ok")
        if files and not problems and not len(s):
            status = "no scalars yet"
        rows.append({
            "run": run_id, "model": info.model, "display_name": display_name(info.model), "dataset": info.dataset,
            "seed": info.seed, "origin": run_origin(info, root), "root": str(root), "path": str(info.path),
            "event_files": len(files), "last_epoch": int(epoch_steps.max()) if epoch_steps.size else None,
            "points": len(s), "status": status,
        })
        arrays.append(s)
    order = sorted(range(len(rows)), key=lambda i: not is_real(rows[i]["dataset"]))  # stable: real runs first
    rows, arrays = [rows[i] for i in order], [arrays[i] for i in order]
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    return ConvergenceData(runs=runs, scalars=_long_frame(runs, arrays), warnings=tuple(warnings))


def _long_frame(runs: pd.DataFrame, arrays: list[Scalars]) -> pd.DataFrame:
    """All runs' scalars in one frame, built from codes (no Python object per row)."""
    cols = ["run", "model", "dataset", "seed", *SCALAR_COLUMNS]
    if not arrays:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    merged = concat_scalars(arrays)  # one tag vocabulary
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    run_code = np.repeat(np.arange(len(arrays), dtype=np.int32), sizes)

    def per_run(values: list[object]) -> pd.Categorical:
        cats = list(dict.fromkeys(map(str, values)))
        lut = np.array([cats.index(str(v)) for v in values], dtype=np.int32)
        return pd.Categorical.from_codes(lut[run_code], categories=pd.Index(cats, dtype=object))

    seeds = pd.array([_int_or_none(s) for s in runs["seed"]], dtype="Int64")
    tags = pd.Index(list(merged.tags), dtype=object)
    return pd.DataFrame({
        "run": per_run(runs["run"].tolist()), "model": per_run(runs["model"].tolist()),
        "dataset": per_run(runs["dataset"].tolist()), "seed": seeds.take(run_code),
        "tag": pd.Categorical.from_codes(merged.code, categories=tags),
        "step": merged.step, "value": merged.value, "wall_time": merged.wall_time,
    })


def _int_or_none(value: object) -> int | None:
    """A run.json seed as an integer; anything else (absent, null, text) as no seed."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return int(value) if np.isfinite(value) and float(value).is_integer() else None


def fingerprint(roots: Iterable[Path | str]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every run.json and event file: a cheap key that changes when any run grows."""
    stamp = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for path in sorted([*root.rglob(RUN_JSON), *root.rglob(EVENT_GLOB)]):
            try:
                st = path.stat()
            except OSError:
                continue
            stamp.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def select_runs(data: ConvergenceData, models: Iterable[str] | None = None,
                datasets: Iterable[str] | None = None) -> ConvergenceData:
    """The runs of the chosen models and datasets (None keeps all; all chosen returns `data` itself)."""
    keep = data.runs
    if models is not None:
        keep = keep[keep["model"].isin(list(models))]
    if datasets is not None:
        keep = keep[keep["dataset"].isin(list(datasets))]
    if len(keep) == len(data.runs):
        return data
    scalars = data.scalars[data.scalars["run"].isin(keep["run"])]
    return ConvergenceData(runs=keep.reset_index(drop=True), scalars=scalars, warnings=data.warnings)


OTHER_PREFIX = "Other: "


def available_metrics(data: ConvergenceData) -> dict[str, str]:
    """CURVES entries that at least one run has logged, then every other logged tag as "Other: <tag>"."""
    tags = set(data.tags)
    known = {label: tag for label, tag in CURVES.items() if tag in tags}
    extra = {f"{OTHER_PREFIX}{tag}": tag for tag in sorted(tags - set(CURVES.values()))}
    return known | extra


def default_curves(metrics: dict[str, str]) -> list[str]:
    """The panels the page opens on: the usual loss / LR / AP ones that exist, and every tag it does not
    know (so nothing logged is hidden)."""
    chosen = [m for m in DEFAULT_CURVES if m in metrics]
    chosen += [m for m in metrics if m.startswith(OTHER_PREFIX)]
    return chosen or list(metrics)[:1]


def mean_of_seeds_default(data: ConvergenceData) -> bool:
    """Open on the mean of seeds when more than MEAN_OF_SEEDS_ABOVE runs are shown."""
    return len(data.runs) > MEAN_OF_SEEDS_ABOVE


