"""What a checkpoint says about itself (model, dataset, epochs, who trained it, where it was converted from) and
loading any checkpoint a user names as the eval-mode model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REAL_DATASETS = ("widerface", "wider face", "wider_face")


def is_real_dataset(dataset: str | None) -> bool:
    """True for WIDER FACE (real photographs); synthetic or unknown training data is never called real."""
    return dataset is not None and dataset.strip().lower() in REAL_DATASETS


def dataset_words(dataset: str | None) -> str:
    return "WIDER FACE" if is_real_dataset(dataset) else (dataset or "unknown data")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a readable checkpoint says about itself (its embedded model name and training extras)."""

    path: Path
    model: str
    dataset: str | None
    epochs: int | None
    trained_by: str | None = None  # who trained a converted reference file (its `source.trained_by`)


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _trained_by(data: Mapping[str, Any]) -> str | None:
    source = data.get("source")
    return _str_or_none(source.get("trained_by")) if isinstance(source, Mapping) else None


def _epochs(data: Mapping[str, Any]) -> int | None:
    """Epochs trained: `epochs` if stored, else `epoch` (train/ numbers epochs from 1, so it is the count)."""
    for key in ("epochs", "epoch"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def checkpoint_origin(data: Mapping[str, Any]) -> str:
    """Where a checkpoint's weights come from, in words: a converted reference file names its source,
    a training run of this project its run and dataset."""
    source = data.get("source")
    if isinstance(source, Mapping) and (source.get("origin") or source.get("file")):
        converted = f"converted from {source.get('origin') or source.get('file')}"
        trained_by = _trained_by(data)
        if trained_by:
            return f"trained on {dataset_words(_str_or_none(data.get('dataset')))} by {trained_by}, {converted}"
        return converted
    run, dataset = _str_or_none(data.get("run_name")), _str_or_none(data.get("dataset"))
    if run or dataset:
        return "trained by this project" + (f" (run {run})" if run else "") + (f" on {dataset}" if dataset else "")
    return "unknown origin (the checkpoint does not say)"


def load_checkpoint_file(path: Path | str, device: str = "cpu", fold_bn: bool = True):
    """Any checkpoint the app accepts, named by the user (CLI use: no root confinement), as the eval-mode
    model (BN folded unless `fold_bn=False`) plus what the file says about itself: (model, info, origin).

    `CheckpointError` with a clear message for a missing, corrupt, refused or unusable file.
    """
    from core.checkpoint import load_checkpoint  # torch import only when loading
    from eval.deploy.bn_fold import prepare_for_inference

    path = Path(path)
    model, data = load_checkpoint(path, map_location=device)
    info = CheckpointInfo(path=path, model=model.name, dataset=_str_or_none(data.get("dataset")),
                          epochs=_epochs(data))
    return prepare_for_inference(model.eval(), fold_bn=fold_bn), info, checkpoint_origin(data)
