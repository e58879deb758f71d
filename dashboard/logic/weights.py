"""Where the dashboard loads a model: the weights picker's options (shipped reference detectors trained on
WIDER FACE, shipped demo weights, checkpoints found under the weights roots, random init) and
`load_inference_model`, which builds the chosen one.

Weights that learned real faces (their checkpoint says `dataset: widerface`) are listed before synthetic ones.
`epoch_<N>.pth` files in a run's `weights/` folder are snapshots of that run: they are not offered on their
own but as the steps of `run_steps`, so a page can step through training.

Every checkpoint is read with `weights_only=True` (core.checkpoint) and re-checked to resolve inside an
allowed root before it is loaded; an unreadable file becomes a listed reason, never an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.config import MODEL_CONFIGS
from core.io.cli_paths import read_problem
from core.lab.artifacts import RUN_JSON
from core.lab.roots import Roots, confine, display_path, ensure_within, is_within, iter_files
from core.lab.study_manifest import parse_run_name
from eval.runs.checkpoints import CheckpointInfo, _epochs, _str_or_none, _trained_by, is_real_dataset

CHECKPOINT_SUFFIX = ".pth"

WeightsKind = Literal["reference", "demo", "checkpoint", "random"]
SNAPSHOT = re.compile(r"epoch_?\d+")  # stem of a run's per-epoch snapshot (weights/epoch_050.pth)


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
    run: Path | None = None  # the run folder when the file is <run>/weights/*.pth beside a run.json

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}" if self.path is not None else f"{self.kind}:{self.model}"

    @property
    def trained(self) -> bool:
        return self.kind != "random"

    @property
    def real(self) -> bool:
        """Learned real faces (trained on WIDER FACE), as opposed to synthetic ones, unknown data or nothing."""
        return self.trained and is_real_dataset(self.dataset)


def faces_learned(option: WeightsOption) -> str:
    """One line on what the model behind `option` learned: real faces, synthetic faces, unknown data, nothing."""
    if not option.trained:
        return "untrained (random init): it learned nothing, its masks show only the architecture"
    if option.real:
        return "learned real faces: trained on WIDER FACE photographs"
    if option.dataset and option.dataset.lower().startswith("synth"):
        return "learned synthetic faces (generated images, not WIDER FACE)"
    return f"trained on {option.dataset}: not WIDER FACE" if option.dataset else \
        "training data unknown (the checkpoint does not say)"


def random_option(model: str) -> WeightsOption:
    return WeightsOption(model=model, kind="random", label="random init — untrained")


@dataclass
class CheckpointScan:
    """Every *.pth under the weights roots: readable ones, and a warning for each skipped file."""

    found: list[CheckpointInfo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scan_checkpoints(roots: Roots) -> CheckpointScan:
    """Read the embedded name of every checkpoint under the weights roots (each file once): without torch
    (core.io.checkpoint_meta) when the file is plainly one of ours, else through torch's full reading."""
    from core.io.checkpoint_meta import CheckpointError, read_checkpoint_meta

    scan = CheckpointScan()
    seen: set[Path] = set()
    for root in roots.weights:
        for path in iter_files(root, CHECKPOINT_SUFFIX, scan.skipped):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                data = read_checkpoint_meta(path)
                if data is None:
                    from core.checkpoint import read_checkpoint  # torch import only for such a file

                    data = read_checkpoint(path)
            except CheckpointError as exc:
                scan.skipped.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - an odd file must never break the sidebar
                scan.skipped.append(f"{path}: unreadable ({read_problem(exc)})")
                continue
            name = data.get("model_name")
            if not isinstance(name, str):
                scan.skipped.append(f"{path}: checkpoint has no model name")
                continue
            scan.found.append(CheckpointInfo(path=path, model=name, dataset=_str_or_none(data.get("dataset")),
                                             epochs=_epochs(data), trained_by=_trained_by(data)))
    return scan


def read_manifest(roots: Roots) -> dict[str, Any] | None:
    """The shipped demo's manifest.json as a dict, or None when absent, unreadable or resolving outside the
    demo folder."""
    path = roots.demo_manifest
    if not path.is_file():
        return None
    try:
        confine(path, roots.demo)
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


def demo_label(dataset: str | None, epochs: int | None, seed: int | None = None) -> str:
    parts = [dataset or "synthetic"] + ([f"{epochs} epochs"] if epochs is not None else [])
    parts += [f"seed {seed}"] if seed is not None else []
    return f"demo ({', '.join(parts)})"


def demo_seed(path: Path, model_name: str, roots: Roots) -> tuple[bool, int | None]:
    """Whether `path` is shipped demo weights of `model_name` (`<demo>/weights/<model>[_s<seed>].pth`), and its seed."""
    if path.resolve().parent != roots.demo_weights.resolve():
        return False, None
    if path.stem == model_name:
        return True, None
    parsed = parse_run_name(path.stem)
    return (True, parsed[1]) if parsed is not None and parsed[0] == model_name else (False, None)


def discover_weights(
    model_name: str, roots: Roots, scan: CheckpointScan | None = None, manifest: Mapping[str, Any] | None = None
) -> list[WeightsOption]:
    """Options for `model_name`: weights that learned real faces first (the shipped reference detectors, then
    any other checkpoint trained on WIDER FACE), then the shipped demo weights, other checkpoints, random init.

    Checkpoints are matched on their embedded model name (a file named cbam.pth that holds another
    variant is not offered for cbam). The demo ships one file per seed (`cbam_s0.pth`, ...), offered
    in seed order. A run's `epoch_<N>.pth` snapshots are left to `run_steps`. Pass `scan` to reuse one
    scan for several models; unreadable files are counted in `scan.skipped`.
    """
    if model_name not in MODEL_CONFIGS:
        raise KeyError(f"unknown model {model_name!r}; choose one of {sorted(MODEL_CONFIGS)}")
    scan = scan if scan is not None else scan_checkpoints(roots)
    manifest = manifest if manifest is not None else read_manifest(roots)
    ranked: list[tuple[tuple[int, int, int], WeightsOption]] = []
    for i, info in enumerate(scan.found):
        if info.model != model_name or is_snapshot(info.path):
            continue
        option, seed = _option(info, roots, manifest)
        group = {"reference": 0, "checkpoint": 1, "demo": 2}[option.kind] if option.real else \
            {"demo": 2, "reference": 3, "checkpoint": 3}[option.kind]
        ranked.append(((group, -1 if seed is None else seed, i), option))
    return [o for _, o in sorted(ranked, key=lambda pair: pair[0])] + [random_option(model_name)]


def _option(info: CheckpointInfo, roots: Roots, manifest: Mapping[str, Any] | None) -> tuple[WeightsOption, int | None]:
    """The picker option for one checkpoint, and its demo seed (None when not a per-seed demo file)."""
    run = run_of(info.path)
    is_demo, seed = demo_seed(info.path, info.model, roots)
    if is_demo:
        dataset = info.dataset or manifest_dataset(manifest)
        epochs = manifest_epochs(manifest, info.model) or info.epochs
        return WeightsOption(model=info.model, kind="demo", label=demo_label(dataset, epochs, seed), path=info.path,
                             dataset=dataset, epochs=epochs, run=run), seed
    reference = roots.reference is not None and is_within(info.path, [roots.reference])
    label = real_label(info, roots) if is_real_dataset(info.dataset) else checkpoint_label(info, roots)
    return WeightsOption(model=info.model, kind="reference" if reference else "checkpoint", label=label,
                         path=info.path, dataset=info.dataset, epochs=info.epochs, run=run), None


def run_of(path: Path) -> Path | None:
    """`<run>/weights/x.pth` -> `<run>` when `<run>/run.json` exists (the layout train/ writes), else None."""
    folder = Path(path).parent
    return folder.parent if folder.name == "weights" and (folder.parent / RUN_JSON).is_file() else None


def is_snapshot(path: Path) -> bool:
    """A run's per-epoch snapshot (`<run>/weights/epoch_050.pth`): stepped through, not offered on its own."""
    return SNAPSHOT.fullmatch(Path(path).stem) is not None and run_of(path) is not None


def run_steps(option: WeightsOption, roots: Roots, scan: CheckpointScan | None = None,
              manifest: Mapping[str, Any] | None = None) -> list[WeightsOption]:
    """Every checkpoint of `option`'s run for the same model that records its epoch, one per epoch in epoch
    order (a run's own Final/last/best file wins over a snapshot of the same epoch): the steps of training.
    Empty when the option is not in a run or the run has fewer than two such checkpoints."""
    if option.run is None or option.path is None:
        return []
    scan = scan if scan is not None else scan_checkpoints(roots)
    manifest = manifest if manifest is not None else read_manifest(roots)
    run = option.run.resolve()
    steps: dict[int, WeightsOption] = {}
    for info in scan.found:
        owner = run_of(info.path)
        if info.model != option.model or info.epochs is None or owner is None or owner.resolve() != run:
            continue
        step, _ = _option(info, roots, manifest)
        previous = steps.get(info.epochs)
        if previous is None or (is_snapshot(previous.path) and not is_snapshot(info.path)):
            steps[info.epochs] = step
    return [steps[e] for e in sorted(steps)] if len(steps) > 1 else []


def real_label(info: CheckpointInfo, roots: Roots) -> str:
    """"trained on WIDER FACE by <who> (<N> epochs)" for a converted reference file; a file that does not say
    who trained it is named by its path. A run's snapshot says "epoch N" instead of "N epochs"."""
    when = None
    if info.epochs is not None:
        when = f"epoch {info.epochs} snapshot" if is_snapshot(info.path) else f"{info.epochs} epochs"
    if info.trained_by:
        return f"trained on WIDER FACE by {info.trained_by}" + (f" ({when})" if when else "")
    return f"{display_path(info.path, roots)} (trained on WIDER FACE{', ' + when if when else ''})"


def checkpoint_label(info: CheckpointInfo, roots: Roots) -> str:
    """Path relative to the repository (or to its root when outside it), plus dataset/epochs when known."""
    label = display_path(info.path, roots)
    extras = [x for x in (info.dataset, f"{info.epochs} epochs" if info.epochs is not None else None) if x]
    return f"{label} ({', '.join(extras)})" if extras else label


def load_inference_model(option: WeightsOption, roots: Roots, seed: int = 0, fold_bn: bool = True):
    """The eval-mode model for `option` (BN folded unless `fold_bn=False`, e.g. to report the parameter
    count of the trained architecture); `CheckpointError`/`SourceError` with a clear message.

    Random init is seeded so every rerun (and every page) shows the same untrained model.
    """
    import torch

    from core.checkpoint import load_checkpoint
    from core.factory import build_model
    from eval.deploy.bn_fold import prepare_for_inference

    if option.kind == "random" or option.path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(option.model)
    else:
        path = ensure_within(option.path, roots.weights)
        model, _ = load_checkpoint(path, expected_name=option.model)
    return prepare_for_inference(model.eval(), fold_bn=fold_bn)
