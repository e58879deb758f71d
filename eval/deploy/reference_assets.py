"""``python -m eval.reference_assets --shared ../shared/reference --out assets/reference [--check]``

Builds the shipped real detectors from the reference files (see `../shared/reference/SOURCES.md`):

    assets/reference/SOURCES.md                                  origins, source sha256s, MIT notices
    assets/reference/retinaface_mnet.pth                         RetinaFace-mobilenet0.25 (eval.import_retinaface)
    assets/reference/runs/featherface_eca_cbam/run.json          the source's ECA-CBAM run, for the run index
    assets/reference/runs/featherface_eca_cbam/events.out.tfevents.*   its TensorBoard log, copied as is
    assets/reference/runs/featherface_eca_cbam/weights/Final.pth       featherface_eca_cbam_final.pth (350 epochs)
    assets/reference/runs/featherface_eca_cbam/weights/epoch_NNN.pth   its epoch checkpoints (eval.import_featherface)

`epoch_350.pth` is the final file tensor for tensor, so only Final.pth is written for epoch 350 (checked on
every run; if they ever differ, epoch_350.pth is written too). `--check` converts again into a temporary
folder and compares every shipped checkpoint tensor for tensor, with the sha256 of its source file: a user
can verify that the shipped files are what these commands make of the published ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoint import CheckpointError, read_checkpoint
from core.io.atomic import atomic_write_bytes, atomic_write_text
from core.io.cli_paths import CliParser, fail, input_dir, output_dir
from core.io.hashing import file_sha256
from eval.deploy.import_featherface import import_featherface
from eval.deploy.import_retinaface import import_retinaface
from eval.deploy.source_weights import SourceWeightsError, read_source_file

FEATHERFACE, RETINAFACE = "fokouarnaud/FeatherFace", "biubug6/Pytorch_Retinaface"
FF_COMMIT, RF_COMMIT = "078fbd7", "3c31dcd"
RUN = Path("runs") / "featherface_eca_cbam"
RUN_ID = f"{FEATHERFACE}@{FF_COMMIT}:weights/eca_cbam"
FINAL_EPOCH = 350
EPOCHS = tuple(range(50, FINAL_EPOCH + 1, 50))
FF_NOTICE, RF_NOTICE = "Copyright (c) 2025 dohunKim", "Copyright (c) 2019"
MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE."""


class ReferenceAssetsError(RuntimeError):
    """A reference file is missing or does not convert; the message names it."""


@dataclass(frozen=True)
class Asset:
    """One shipped file: where it goes (relative to --out), the source file it is made from and its origin."""

    out: Path
    source: Path
    origin: str
    kind: str  # "featherface", "retinaface" or "log"
    epoch: int | None = None


def plan(shared: Path) -> list[Asset]:
    """Every shipped file and its source under `shared` (the folder SOURCES.md describes)."""
    eca = shared / "featherface_eca_cbam"
    logs = sorted(eca.glob("events.out.tfevents.*"))
    if not logs:
        raise ReferenceAssetsError(f"no events.out.tfevents.* in {eca}")
    origin = f"{FEATHERFACE}@{FF_COMMIT}:weights/eca_cbam/"
    assets = [Asset(RUN / "weights" / "Final.pth", eca / "featherface_eca_cbam_final.pth",
                    origin + "featherface_eca_cbam_final.pth", "featherface", FINAL_EPOCH)]
    for epoch in EPOCHS:
        name = f"featherface_eca_cbam_epoch_{epoch}.pth"
        assets.append(Asset(RUN / "weights" / f"epoch_{epoch:03d}.pth", eca / name, origin + name, "featherface",
                            epoch))
    assets.append(Asset(RUN / logs[-1].name, logs[-1], f"{origin}logs/{logs[-1].name}", "log"))
    assets.append(Asset(Path("retinaface_mnet.pth"), shared / "retinaface_mnet" / "mobilenet0.25_Final.pth",
                        f"{RETINAFACE}@{RF_COMMIT}:weights/Final_Retinaface.pth", "retinaface"))
    missing = [str(a.source) for a in assets if not a.source.is_file()]
    if missing:
        raise ReferenceAssetsError(f"reference file not found: {missing[0]} ({len(missing)} missing)")
    return assets


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two source checkpoints hold the same keys and tensors (the final file vs the last epoch)."""
    sa, sb = read_source_file(a).state, read_source_file(b).state
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def build(shared: Path, out: Path, progress: bool = True) -> list[Asset]:
    """Write every shipped file under `out` (atomically, file by file) and SOURCES.md; returns what was written."""
    assets = plan(shared)
    final = next(a for a in assets if a.out.name == "Final.pth")
    last = next(a for a in assets if a.epoch == FINAL_EPOCH and a is not final)
    if same_tensors(final.source, last.source):
        assets.remove(last)
    for asset in tqdm(assets, desc="reference assets", unit="file", disable=not progress):
        target = out / asset.out
        if asset.kind == "featherface":
            import_featherface(asset.source, target, network="eca_cbam", origin=asset.origin,
                               trained_by=FEATHERFACE, epoch=asset.epoch)
        elif asset.kind == "retinaface":
            import_retinaface(asset.source, target, origin=asset.origin, trained_by=RETINAFACE)
        else:
            atomic_write_bytes(target, asset.source.read_bytes())
    log = next(a for a in assets if a.kind == "log")
    atomic_write_text(out / RUN / "run.json", json.dumps(run_meta(log, final), indent=2) + "\n")
    atomic_write_text(out / "SOURCES.md", sources_md(assets, epoch_350_dropped=last not in assets))
    return assets


def run_meta(log: Asset, final: Asset) -> dict:
    """run.json of the source's ECA-CBAM run: enough for the run index (model, dataset), named by its origin."""
    return {
        "id": RUN_ID, "model": "eca_cbam", "dataset": "widerface", "seed": None,
        "max_epoch": FINAL_EPOCH, "epochs_done": FINAL_EPOCH, "status": "finished",
        "trained_by": FEATHERFACE, "origin": f"{RUN_ID} (train_eca_cbam.py, {FINAL_EPOCH} epochs on WIDER FACE)",
        "event_file": {"name": log.source.name, "sha256": file_sha256(log.source), "origin": log.origin},
        "weights": {"Final.pth": final.origin, "epoch_NNN.pth": f"{RUN_ID}/featherface_eca_cbam_epoch_N.pth"},
        "note": "Written by the source's train_eca_cbam.py, not by this project's train/: its TensorBoard tags "
                "(Loss/Total, Loss/Classification, Loss/Localization, Loss/Landmarks, Learning_Rate, Epoch/*) "
                "are the source's.",
    }


def sources_md(assets: list[Asset], epoch_350_dropped: bool) -> str:
    rows = "\n".join(f"| `{a.out.as_posix()}` | {describe(a)} | {a.origin} | `{file_sha256(a.source)}` |"
                     for a in assets)
    dropped = (f"\n`featherface_eca_cbam_epoch_{FINAL_EPOCH}.pth` holds the same tensors as the final file (checked "
               "when these files are made), so `weights/Final.pth` is the run's epoch-350 step.\n"
               if epoch_350_dropped else "")
    return f"""# Shipped reference detectors: trained on WIDER FACE by their authors

Made from the published files (as described in `../shared/reference/SOURCES.md`) by

    .venv/bin/python -m eval.reference_assets --shared ../shared/reference --out assets/reference

and checked against them (converted again, compared tensor for tensor) by adding `--check`. The converted
checkpoints are this project's format (`core/checkpoint.py`): any `--trained-model` and the dashboard's
weights pickers take them. Each records its source file's name, sha256 and origin.

| file | what it is | origin (repository@commit:path) | sha256 of the source file |
|---|---|---|---|
{rows}
{dropped}
Not measured here: WIDER FACE AP. The dashboard shows the sources' published numbers as published.

## Licences

The FeatherFace files come from {FEATHERFACE} under the MIT licence, {FF_NOTICE}.
The RetinaFace file comes from {RETINAFACE} under the MIT licence, {RF_NOTICE}.

    MIT License

    {FF_NOTICE} ({FEATHERFACE})
    {RF_NOTICE} ({RETINAFACE})

{_indent(MIT)}
"""


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in text.splitlines())


def describe(asset: Asset) -> str:
    if asset.kind == "log":
        return "the ECA-CBAM run's TensorBoard log, copied as is (350 epochs, 141,450 steps)"
    if asset.kind == "retinaface":
        return "RetinaFace-mobilenet0.25 trained on WIDER FACE, converted by `eval.import_retinaface`"
    what = "final weights" if asset.out.name == "Final.pth" else f"epoch {asset.epoch} checkpoint"
    return (f"FeatherFace ECA-CBAM sequential ({what}, trained on WIDER FACE), converted by "
            "`eval.import_featherface`")


def check(shared: Path, shipped: Path) -> list[str]:
    """Convert again into a temporary folder and compare with `shipped`; the problems found (empty: all equal)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        assets = build(shared, fresh, progress=False)
        for asset in assets:
            ours, theirs = shipped / asset.out, fresh / asset.out
            if not ours.is_file():
                problems.append(f"{ours}: missing")
            elif asset.kind == "log":
                if file_sha256(ours) != file_sha256(theirs):
                    problems.append(f"{ours}: differs from {asset.source}")
            else:
                problems += _compare(ours, theirs)
        if not (shipped / RUN / "run.json").is_file():
            problems.append(f"{shipped / RUN / 'run.json'}: missing")
    return problems


def _compare(ours: Path, theirs: Path) -> list[str]:
    try:
        a, b = read_checkpoint(ours), read_checkpoint(theirs)
    except CheckpointError as exc:
        return [str(exc)]
    if a["model_name"] != b["model_name"] or a.get("source") != b.get("source"):
        return [f"{ours}: model or source differs ({a['model_name']}, {a.get('source')})"]
    if a.get("config") != b.get("config"):
        changed = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
        return [f"{ours}: built with another model config ({', '.join(changed)}): regenerate"]
    sa, sb = a["state_dict"], b["state_dict"]
    if sa.keys() != sb.keys():
        return [f"{ours}: keys differ from a fresh conversion (the model's layout changed: regenerate)"]
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    return [f"{ours}: {len(bad)} tensors differ from a fresh conversion, first {bad[0]}"] if bad else []


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.reference_assets", description=__doc__.split("\n\n")[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=input_dir, default=Path("../shared/reference"),
                        help="folder holding SOURCES.md's files (default: %(default)s)")
    parser.add_argument("--out", type=output_dir, default=str(Path("assets/reference")), help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="compare --out with a fresh conversion; write nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_checked(argv)
    try:
        if args.check:
            problems = check(args.shared, args.out)
            for p in problems:
                print(f"differs: {p}", file=sys.stderr)
            print(f"{args.out}: {'matches' if not problems else f'{len(problems)} problem(s) against'} "
                  f"a fresh conversion of {args.shared}")
            return 1 if problems else 0
        assets = build(args.shared, args.out)
    except (ReferenceAssetsError, SourceWeightsError, CheckpointError) as exc:
        return fail(exc)
    print(f"{len(assets)} files + run.json + SOURCES.md -> {args.out}")
    return 0
