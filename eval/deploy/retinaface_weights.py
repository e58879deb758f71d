"""Published RetinaFace-mobilenet0.25 weights (biubug6/Pytorch_Retinaface `mobilenet0.25_Final.pth`) for the
`retinaface_mnet` entry, so the published 90.7 / 88.2 / 73.8 can be checked through this project's own
predictor and evaluator.

That file is `torch.save(net.state_dict())` of the reference RetinaFace (train.py), often under a
DataParallel `module.` prefix (its detect.py strips it), sometimes wrapped in {"state_dict": ...}. Its
module names map one to one onto this project's (same layers, same order, same shapes):

    body.stageN...                      -> body.stageN...
    fpn.output{1,2,3}.{0,1}...          -> fpn.lateral.{0,1,2}.{0,1}...
    fpn.merge{1,2}...                   -> fpn.merge.{0,1}...
    ssh{1,2,3}.<branch>.{0,1}...        -> ssh.{0,1,2}.<branch>.{conv,bn}...   (conv3X3 -> conv3x3, ...)
    {Class,Bbox,Landmark}Head.N.conv1x1 -> heads.{cls,bbox,landmark}.convs.N
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from core.backbone_weights import PREFIX, BackboneWeightsError
from core.checkpoint import load_torch_file
from core.detector import FeatherFace
from core.io.hashing import file_sha256

BRANCHES = {"conv3X3": "conv3x3", "conv5X5_1": "conv5x5_1", "conv5X5_2": "conv5x5_2", "conv7X7_2": "conv7x7_2",
            "conv7x7_3": "conv7x7_3"}
HEADS = {"ClassHead": "cls", "BboxHead": "bbox", "LandmarkHead": "landmark"}


class RetinaFaceWeightsError(BackboneWeightsError):
    """The file is not a RetinaFace-mobilenet0.25 state dict that fits `retinaface_mnet`; the message names the key."""


def project_key(key: str) -> str | None:
    """This project's name for a reference key (without `module.`), or None if it has no counterpart."""
    if key.startswith("body."):
        return key
    if m := re.fullmatch(r"fpn\.output([123])\.([01])\.(.+)", key):
        return f"fpn.lateral.{int(m[1]) - 1}.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"fpn\.merge([12])\.(.+)", key):
        return f"fpn.merge.{int(m[1]) - 1}.{m[2]}"
    if (m := re.fullmatch(r"ssh([123])\.(\w+)\.([01])\.(.+)", key)) and m[2] in BRANCHES:
        return f"ssh.{int(m[1]) - 1}.{BRANCHES[m[2]]}.{'conv' if m[3] == '0' else 'bn'}.{m[4]}"
    if (m := re.fullmatch(r"(\w+Head)\.([012])\.conv1x1\.(weight|bias)", key)) and m[1] in HEADS:
        return f"heads.{HEADS[m[1]]}.convs.{m[2]}.{m[3]}"
    return None


def load_retinaface_weights(model: FeatherFace, path: Path | str) -> str:
    """Strictly load a reference `mobilenet0.25_Final.pth` into a `retinaface_mnet` model; returns its sha256."""
    path = Path(path)
    if model.cfg.neck != "fpn" or model.cfg.deformable_ssh or model.has_attention:
        raise RetinaFaceWeightsError(f"model {model.name!r} is not the RetinaFace-mobilenet0.25 layout; "
                                     "use retinaface_mnet")
    data = load_torch_file(path, what="RetinaFace weights", error=RetinaFaceWeightsError,
                           fix="use mobilenet0.25_Final.pth from biubug6/Pytorch_Retinaface as downloaded "
                               "(a torch.save state dict), or download it again")
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RetinaFaceWeightsError(f"{path} holds no state dict of tensors")
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        name = project_key(key[len(PREFIX):] if key.startswith(PREFIX) else key)
        if name is None:
            unknown.append(key)
        else:
            mapped[name] = value
    own = model.state_dict()
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = unknown + [k for k in mapped if k not in own]
    shapes = [f"{k} {tuple(mapped[k].shape)} (model: {tuple(own[k].shape)})"
              for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        first = (f"missing key {missing[0]}" if missing else f"unexpected key {unexpected[0]}" if unexpected
                 else f"wrong shape {shapes[0]}")
        raise RetinaFaceWeightsError(f"{path} does not fit retinaface_mnet: {first} ({len(missing)} missing, "
                                     f"{len(unexpected)} unexpected, {len(shapes)} wrongly shaped)")
    model.load_state_dict({k: mapped.get(k, own[k]) for k in own})
    return file_sha256(path)
