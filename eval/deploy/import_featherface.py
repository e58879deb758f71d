"""``python -m eval.import_featherface --checkpoint featherface_eca_cbam_final.pth --out weights/eca_cbam.pth``

Converts a checkpoint of the seed source (fokouarnaud/FeatherFace: `FeatherFaceCBAMExact`,
`FeatherFaceECAcbaM`, `FeatherFaceECAcbaMParallel`) into this project's checkpoint format, which every
`--trained-model` and the dashboard's weights pickers take. The variant is found from the keys
(`--network auto`); the names are mapped by `eval.deploy.source_weights` and loaded strictly. The output records
the source file's name, sha256 and origin, and is written atomically: a refused file leaves nothing behind
and an existing --out untouched.

Refused, with one line saying what was found: a RetinaFace file (use `eval.deploy.import_retinaface`), the
source's earlier architectures (56-channel two-cell BiFPN, 64-channel CBAM with `bacbkbone_*_cbam` /
`ssh*_cs`, `featherface_v2` with `ca_p*`), text, empty or truncated files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.checkpoint import save_checkpoint
from core.io.cli_paths import CliParser, fail, input_file, output_file
from eval.deploy.source_weights import NETWORKS, SOURCE_CLASSES, SOURCE_REPO, SourceWeightsError, convert_source_file

DATASET = "widerface"  # the source's training scripts read WIDER FACE only


@dataclass(frozen=True)
class ImportReport:
    """What was converted: the variant, the source file's sha256, the epoch recorded and the tensor count."""

    network: str
    sha256: str
    epoch: int | None
    tensors: int


def import_featherface(checkpoint: Path | str, out: Path | str, network: str = "auto", origin: str | None = None,
                       trained_by: str | None = None, dataset: str = DATASET,
                       epoch: int | None = None) -> ImportReport:
    """Write a project checkpoint from a source checkpoint; `SourceWeightsError` (one line) on refusal."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise SourceWeightsError(f"--out {out} is the source file itself; write the conversion elsewhere")
    if out.is_dir():
        raise SourceWeightsError(f"--out {out} is a folder; give a file name such as {out / 'eca_cbam.pth'}")
    model, src, chosen = convert_source_file(checkpoint, network)
    epoch = epoch if epoch is not None else src.epoch
    source = {"file": checkpoint.name, "sha256": src.sha256,
              "origin": origin or f"{SOURCE_REPO} {SOURCE_CLASSES[chosen]} checkpoint",
              "converted_by": "python -m eval.import_featherface"}
    if trained_by:
        source["trained_by"] = trained_by
    extra = {"epoch": epoch} if epoch is not None else {}
    save_checkpoint(out, model, source=source, dataset=dataset, **extra)
    return ImportReport(network=chosen, sha256=src.sha256, epoch=epoch, tensors=len(src.state))


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.import_featherface", description=__doc__.split("\n\n")[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=input_file,
                        help="the source's .pth (state dict or training dict, `module.` prefix and CUDA tensors "
                             "accepted)")
    parser.add_argument("--out", required=True, type=output_file, help="where to write the converted checkpoint")
    parser.add_argument("--network", default="auto", choices=("auto", *NETWORKS),
                        help="variant; auto finds it from the keys (ECA-CBAM keys are taken as sequential unless "
                             "the source's training dict names the parallel design)")
    parser.add_argument("--origin", default=None, help="where the file comes from (repository@commit:path), "
                        "recorded in the checkpoint")
    parser.add_argument("--trained-by", default=None, help="who trained it (e.g. fokouarnaud/FeatherFace); the "
                        "dashboard labels the weights 'trained on <dataset> by <this>'")
    parser.add_argument("--dataset", default=DATASET, help="what it was trained on (default: %(default)s, the only "
                        "data the source's training scripts read)")
    parser.add_argument("--epoch", type=int, default=None, help="epochs trained, when neither the file nor its "
                        "name (…epoch_50.pth) says")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = import_featherface(args.checkpoint, args.out, args.network, args.origin, args.trained_by,
                                    args.dataset, args.epoch)
    except SourceWeightsError as exc:
        return fail(exc)
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    epoch = f", epoch {report.epoch}" if report.epoch is not None else ""
    print(f"{args.checkpoint} (sha256 {report.sha256[:12]}..., {report.tensors} tensors) -> {args.out}: "
          f"{report.network}{epoch}")
    return 0
