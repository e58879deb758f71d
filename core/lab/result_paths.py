"""Where one comparison row's evaluation JSON and heatmap figure live: names derived from the row's (model,
dataset, weights), so a page finds a row's files without the checkpoint."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def weights_tag(weights: str) -> str:
    """Readable, stable file tag for a weights path string: `<run>-<stem>-<hash8>`.

    Derived from the `weights` column (not the file), so the dashboard can find a row's JSON even
    where the checkpoint itself is absent.
    """
    path = Path(weights)
    owner = next((p.name for p in path.parents if p.name and p.name != "weights"), "")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{owner}-{path.stem}" if owner else path.stem).strip("_.-")
    return f"{slug}-{hashlib.sha1(weights.encode()).hexdigest()[:8]}"


def artifact_stem(model: str, dataset: str, weights: str) -> str:
    return f"{model}__{dataset}__{weights_tag(weights)}"


def eval_json_path(results_root: Path | str, model: str, dataset: str, weights: str) -> Path:
    """Where the full evaluation of one comparison row lives."""
    return Path(results_root) / "eval" / f"{artifact_stem(model, dataset, weights)}.json"


def figure_path(results_root: Path | str, model: str, dataset: str, weights: str) -> Path:
    """Where the heatmap figure of one comparison row lives."""
    return Path(results_root) / "figures" / f"attention_heatmaps__{artifact_stem(model, dataset, weights)}.png"
