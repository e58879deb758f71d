"""ImageNet MobileNetV1-0.25 weights for the detector's body, in RetinaFace's checkpoint format.

RetinaFace (biubug6/Pytorch_Retinaface, `models/retinaface.py`) starts from
`weights/mobilenetV1X0.25_pretrain.tar`: a `torch.save` dict whose "state_dict" holds the classifier's
weights under a DataParallel `module.` prefix (`module.stage1.0.0.weight` ... `module.fc.bias`), next to
entries such as "epoch", "arch" or "best_prec1". Despite the `.tar` name it is not a tar archive (users
often take it for a corrupt file); `.pth` and `.pth.tar` copies are the same bytes.

`load_backbone_weights` reads such a file with `weights_only=True`, drops the `module.` prefix and the
classifier (`fc.*`), and loads it strictly: a missing, unexpected or wrongly shaped key stops with an
error that names it. A missing `num_batches_tracked` is filled in, as `nn.BatchNorm2d` does for files
written before PyTorch 0.4.1. `train.pretrain_backbone` writes exactly this format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoint import CheckpointError, load_torch_file
from core.io.hashing import file_sha256

PREFIX = "module."
CLASSIFIER = "fc."
OPTIONAL_SUFFIX = "num_batches_tracked"
BACKBONE_FIX = ("a RetinaFace backbone file (mobilenetV1X0.25_pretrain.tar) is a torch.save dict even when named .tar, "
                "not a tar archive: use the file as downloaded, without unpacking or converting it, or make one "
                "with python -m train.pretrain_backbone")


class BackboneWeightsError(CheckpointError):
    """The backbone file cannot be read or does not fit MobileNetV1-0.25; the message names the key."""


@dataclass(frozen=True)
class BackboneWeightsInfo:
    """What was loaded, for run.json: the file name, its sha256, and how many tensors went in."""

    name: str
    path: str
    sha256: str
    tensors: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "tensors": self.tensors}


def read_backbone_state(path: Path | str) -> dict[str, torch.Tensor]:
    """The body's state dict from a RetinaFace-format file (or a bare state dict), prefix and `fc.*` removed."""
    data = load_torch_file(path, what="backbone weights", fix=BACKBONE_FIX, error=BackboneWeightsError)
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneWeightsError(f"{path} holds no state dict of tensors (expected a dict with 'state_dict', "
                                   "as RetinaFace's mobilenetV1X0.25_pretrain.tar)")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if not name.startswith(CLASSIFIER):
            out[name] = value
    return out


def load_backbone_weights(body: nn.Module, path: Path | str) -> BackboneWeightsInfo:
    """Strictly load `path` into `body` (a `core.nets.backbone.MobileNetV1`); returns name + sha256 for run.json."""
    path = Path(path)
    state = read_backbone_state(path)
    own = body.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} (model: {tuple(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing key {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if unexpected:
            problems.append(f"unexpected key {unexpected[0]}"
                            + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
        if shapes:
            problems.append(f"wrong shape {shapes[0]}" + (f" and {len(shapes) - 1} more" if len(shapes) > 1 else ""))
        raise BackboneWeightsError(f"{path} does not fit MobileNetV1-0.25: " + "; ".join(problems))
    full = {k: state.get(k, own[k]) for k in own}  # absent num_batches_tracked: keep the model's counter
    body.load_state_dict(full)
    return BackboneWeightsInfo(name=path.name, path=str(path), sha256=file_sha256(path), tensors=len(state))


