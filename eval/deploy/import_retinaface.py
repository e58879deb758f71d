"""``python -m eval.import_retinaface --weights mobilenet0.25_Final.pth --out weights/retinaface_mnet.pth``

Converts the published RetinaFace-mobilenet0.25 weights (biubug6/Pytorch_Retinaface) into this project's
checkpoint format for `retinaface_mnet` (mapping in `eval.deploy.retinaface_weights`), recording the source file's
name and sha256. Then, with WIDERFace val, the reference's test settings reproduce its published numbers:

    python -m eval.predict --network retinaface_mnet --trained-model weights/retinaface_mnet.pth \\
        --data data/widerface --out preds/rf --top-k 0 --keep-top-k 0
    python -m eval.widerface --pred preds/rf --gt data/widerface/ground_truth
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from core.checkpoint import save_checkpoint
from core.config import BASELINE_MODEL
from core.factory import build_model
from core.io.cli_paths import CliParser, fail, input_file, output_file
from eval.deploy.retinaface_weights import RetinaFaceWeightsError, load_retinaface_weights

DATASET = "widerface"  # the reference's train.py reads WIDER FACE only


def import_retinaface(weights: Path | str, out: Path | str, origin: str | None = None,
                      trained_by: str | None = None) -> str:
    """Write a `retinaface_mnet` checkpoint from the reference file; returns the source's sha256. `trained_by`
    (e.g. biubug6/Pytorch_Retinaface for the published file) labels it in the dashboard."""
    model = build_model(BASELINE_MODEL)
    sha = load_retinaface_weights(model, weights)
    source = {"file": Path(weights).name, "sha256": sha,
              "origin": origin or "biubug6/Pytorch_Retinaface mobilenet0.25_Final.pth"}
    if trained_by:
        source["trained_by"] = trained_by
    save_checkpoint(out, model, source=source, dataset=DATASET)
    return sha


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m eval.import_retinaface", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, type=input_file, help="reference mobilenet0.25_Final.pth")
    parser.add_argument("--out", type=output_file, default="weights/retinaface_mnet.pth")
    parser.add_argument("--origin", default=None, help="where the file comes from, recorded in the checkpoint")
    parser.add_argument("--trained-by", default=None, help="who trained it (biubug6/Pytorch_Retinaface for the "
                        "published file); the dashboard labels the weights 'trained on WIDER FACE by <this>'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sha = import_retinaface(args.weights, args.out, args.origin, args.trained_by)
    except RetinaFaceWeightsError as exc:
        return fail(exc)
    print(f"{args.weights} (sha256 {sha[:12]}...) -> {args.out}")
    return 0
