"""Checkpoints of the seed source (fokouarnaud/FeatherFace @ f023145) -> this project's state dicts.

The source saves `torch.save(model.state_dict())` of `FeatherFaceCBAMExact`, `FeatherFaceECAcbaM` or
`FeatherFaceECAcbaMParallel` (models/*.py over models/net.py), sometimes inside a training dict
({"model_state_dict": ..., "epoch": ...}), with a DataParallel `module.` prefix, or with its tensors on
CUDA (the published epoch files are). Module names map one to one onto this project's:

    body.stageN...                                  -> body.stageN...
    backbone_attention_i.{eca,sam}.conv.weight      -> backbone_attention.i.{channel_gate,spatial_gate}.conv.weight
    bifpn_attention_i...                            -> bifpn_attention.i...           (ECA-CBAM, both designs)
    backbone_cbam_i.ChannelGate.mlp.{1,3}.*         -> backbone_attention.i.channel_gate.mlp.{0,2}.*
    backbone_cbam_i.SpatialGate.spatial.{conv,bn}.* -> backbone_attention.i.spatial_gate.{conv,bn}.*
    bif_cbam_i...                                   -> bifpn_attention.i...           (CBAM)
    bifpn.n.p{3,4,5}_down_channel[_2].{0.conv,1}.*  -> bifpn.cells.n.p{3,4,5}_in[_2].{0,1}.*
    bifpn.n.{p4_w1,p3_w1,p4_w2,p5_w2}               -> bifpn.cells.n.fuse_{p4_td,p3_out,p4_out,p5_out}.weight
    bifpn.n.{conv4_up,conv3_up,conv4_down,conv5_down}.{depthwise_conv.conv,pointwise_conv.conv,bn}.*
                                       -> bifpn.cells.n.conv_{p4_td,p3_out,p4_out,p5_out}.{depthwise,pointwise,bn}.*
    sshK.<branch>.0.regular_conv.weight             -> ssh.K-1.<branch>.conv.weight    (conv3X3 -> conv3x3, ...)
    sshK.<branch>.0.{offset_conv,modulator_conv}.*  -> ssh.K-1.<branch>.conv.offset_mask.*  (18 offset rows, then 9)
    sshK.<branch>.1.*                               -> ssh.K-1.<branch>.bn.*
    {Class,Bbox,Landmark}Head.i.conv1x1.*           -> heads.{cls,bbox,landmark}.convs.i.*

Sequential and parallel ECA-CBAM hold the same tensors (the parallel module adds no weights), so the keys
alone say "ECA-CBAM"; the source's own training dict names the parallel design (`eca_cbam_parallel_config`),
a plain state dict is taken as sequential, the only design the source published weights for.

Files from the source's earlier history, a RetinaFace file, or anything else are refused with one line
that names what was found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checkpoint import FORMAT, CheckpointError, load_torch_file
from core.detector import FeatherFace
from core.factory import build_model
from core.io.hashing import file_sha256

SOURCE_REPO = "fokouarnaud/FeatherFace"
PREFIX = "module."
WRAPPER_KEYS = ("state_dict", "model_state_dict")
NETWORKS = ("cbam", "eca_cbam", "eca_cbam_parallel")
# The source's class for each variant it defines (models/*.py at f023145), named in messages. "none" (the same
# parts without attention) has no source class; its layout is the source's with no attention tensors.
SOURCE_CLASSES = {"cbam": "FeatherFaceCBAMExact", "eca_cbam": "FeatherFaceECAcbaM",
                  "eca_cbam_parallel": "FeatherFaceECAcbaMParallel", "none": "attention-free"}
PROFILER_SUFFIXES = ("total_ops", "total_params")  # thop's buffers, left in some of the source's files
SOURCE_CELLS, SOURCE_WIDTH = 3, 52  # the f023145 BiFPN: three cells of 52 channels
PARALLEL_MARKER = "eca_cbam_parallel_config"  # key of train_eca_cbam_parallel.py's checkpoint dict
BRANCHES = {"conv3X3": "conv3x3", "conv5X5_1": "conv5x5_1", "conv5X5_2": "conv5x5_2", "conv7X7_2": "conv7x7_2",
            "conv7x7_3": "conv7x7_3"}
HEADS = {"ClassHead": "cls", "BboxHead": "bbox", "LandmarkHead": "landmark"}
FUSIONS = {"p4_w1": "fuse_p4_td", "p3_w1": "fuse_p3_out", "p4_w2": "fuse_p4_out", "p5_w2": "fuse_p5_out"}
SEPARABLE = {"conv4_up": "conv_p4_td", "conv3_up": "conv_p3_out", "conv4_down": "conv_p4_out",
             "conv5_down": "conv_p5_out"}
SEPARABLE_PARTS = {"depthwise_conv.conv": "depthwise", "pointwise_conv.conv": "pointwise", "bn": "bn"}
OPTIONAL_SUFFIX = "num_batches_tracked"


class SourceWeightsError(CheckpointError):
    """The file is not a source checkpoint of one of the three designs, or does not fit; the message says what
    was found."""


@dataclass(frozen=True)
class SourceFile:
    """A source checkpoint as read: its state dict (prefix stripped, on CPU), the keys of the dict it was
    wrapped in (empty for a plain state dict), the epoch it records, and the file's sha256."""

    path: Path
    state: dict[str, torch.Tensor]
    wrapper_keys: tuple[str, ...]
    epoch: int | None
    sha256: str


def read_source_file(path: Path | str) -> SourceFile:
    """Load a source checkpoint on CPU with `weights_only=True`; `SourceWeightsError` for a missing, empty,
    text, truncated or non-tensor file, and for a file that is already this project's checkpoint."""
    path = Path(path)
    data = load_torch_file(path, what="source checkpoint", error=SourceWeightsError,
                           fix="use the .pth as the source repository ships it (a torch.save file), or copy it again")
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        raise SourceWeightsError(f"{path} is already a FeatherFace Lab checkpoint (model "
                                 f"{data.get('model_name')!r}): use it as it is, no conversion needed")
    wrapper: tuple[str, ...] = ()
    state: Any = data
    if isinstance(data, Mapping):
        inner = next((k for k in WRAPPER_KEYS if isinstance(data.get(k), Mapping)), None)
        if inner is not None:
            wrapper, state = tuple(str(k) for k in data), data[inner]
    if not isinstance(state, Mapping) or not state:
        raise SourceWeightsError(f"{path} holds {type(state).__name__}, not a state dict of tensors")
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise SourceWeightsError(f"{path} is not a state dict of tensors: entry {bad!r} is a "
                                 f"{type(state[bad]).__name__}")
    clean = {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in state.items()}
    epoch = data.get("epoch") if wrapper else None
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        match = re.search(r"epoch_?(\d+)", path.stem)
        epoch = int(match.group(1)) if match else None
    return SourceFile(path=path, state=clean, wrapper_keys=wrapper, epoch=epoch, sha256=file_sha256(path))


def _channels(state: Mapping[str, torch.Tensor]) -> int | None:
    """BiFPN width, from the first head's input channels."""
    weight = state.get("ClassHead.0.conv1x1.weight")
    return int(weight.shape[1]) if weight is not None and weight.dim() == 4 else None


def _cells(state: Iterable[str]) -> int:
    return len({m[1] for k in state if (m := re.match(r"bifpn\.(\d+)\.", k))})


def _params(state: Mapping[str, torch.Tensor]) -> int:
    return sum(v.numel() for k, v in state.items()
               if not k.endswith(("running_mean", "running_var", OPTIONAL_SUFFIX, "total_ops", "total_params")))


def strip_source_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` without DataParallel's `module.` prefix and thop's profiler buffers."""
    return {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in state.items()
            if not k.endswith(PROFILER_SUFFIXES)}


def detect_source_variant(state: Mapping[str, torch.Tensor], wrapper_keys: Iterable[str] = ()) -> str:
    """The variant ("cbam", "eca_cbam", "eca_cbam_parallel") whose source class wrote `state`, or "none" for
    the f023145 layout without attention tensors; `SourceWeightsError` naming what the keys show otherwise.

    Sequential and parallel ECA-CBAM have the same tensors: "eca_cbam" unless `wrapper_keys` (the keys of
    the source's training dict around the state dict) name the parallel design."""
    state = strip_source_keys(state)
    keys = list(state)
    width, cells, params = _channels(state), _cells(keys), _params(state)
    shape = f"{width}-channel {cells}-cell BiFPN, {params:,} parameters"
    if any(k.startswith("ca_p") for k in keys):
        raise SourceWeightsError(f"an earlier FeatherFace architecture from the source's history: featherface_v2 "
                                 f"(coordinate attention ca_p3/ca_p4/ca_p5, {shape}), not one of the paper's "
                                 "three designs")
    if any(k.startswith("bacbkbone_") or re.match(r"ssh\d_cs\.", k) for k in keys):
        raise SourceWeightsError(f"an earlier FeatherFace architecture from the source's history: CBAM with "
                                 f"bacbkbone_*_cbam / ssh*_cs modules ({shape}), not the paper's "
                                 f"{SOURCE_CLASSES['cbam']}")
    if any(k.startswith(("fpn.output", "fpn.merge")) for k in keys):
        raise SourceWeightsError("a RetinaFace state dict (fpn.output*/fpn.merge*, plain SSH convs), not "
                                 "FeatherFace: convert it with `python -m eval.import_retinaface --weights FILE "
                                 "--out weights/retinaface_mnet.pth`")
    eca = any(k.startswith("backbone_attention_") for k in keys)
    cbam = any(k.startswith("backbone_cbam_") for k in keys)
    if eca and not cbam:
        return "eca_cbam_parallel" if PARALLEL_MARKER in set(wrapper_keys) else "eca_cbam"
    if cbam and not eca:
        return "cbam"
    if keys and all(k.startswith(("stage1.", "stage2.", "stage3.", "fc.")) for k in keys):
        raise SourceWeightsError("an ImageNet MobileNetV1-0.25 classifier (stage1-3 + fc), not a detector: it is "
                                 "the backbone both references train from (`python -m train --backbone-weights`)")
    if cells == SOURCE_CELLS and width == SOURCE_WIDTH and any(k.startswith("bifpn.0.p3_down_channel.") for k in keys):
        return "none"
    if cells:
        raise SourceWeightsError(f"an earlier FeatherFace architecture from the source's history ({shape}, no "
                                 "attention modules), not one of the paper's three designs")
    first = ", ".join(keys[:3])
    raise SourceWeightsError(f"not a FeatherFace state dict: none of backbone_attention_*, backbone_cbam_* or "
                             f"bifpn.* among its {len(keys)} keys (first: {first})")


def project_key(key: str) -> str | None:
    """This project's name for a source key (without `module.`), or None if it has none. The DCN's
    offset_conv / modulator_conv pair both map to `offset_mask` and are joined by `map_source_state_dict`."""
    if key.startswith("body."):
        return key
    if m := re.fullmatch(r"(backbone|bifpn)_attention_(\d)\.(eca|sam)\.conv\.weight", key):
        return f"{m[1]}_attention.{m[2]}.{'channel_gate' if m[3] == 'eca' else 'spatial_gate'}.conv.weight"
    if m := re.fullmatch(r"(backbone_cbam|bif_cbam)_(\d)\.(.+)", key):
        where = "backbone" if m[1] == "backbone_cbam" else "bifpn"
        if mm := re.fullmatch(r"ChannelGate\.mlp\.([13])\.(weight|bias)", m[3]):
            return f"{where}_attention.{m[2]}.channel_gate.mlp.{int(mm[1]) - 1}.{mm[2]}"
        if mm := re.fullmatch(r"SpatialGate\.spatial\.(conv|bn)\.(\w+)", m[3]):
            return f"{where}_attention.{m[2]}.spatial_gate.{mm[1]}.{mm[2]}"
        return None
    if m := re.fullmatch(r"bifpn\.(\d+)\.(p\d_w\d)", key):
        return f"bifpn.cells.{m[1]}.{FUSIONS[m[2]]}.weight" if m[2] in FUSIONS else None
    if m := re.fullmatch(r"bifpn\.(\d+)\.(p[345])_down_channel(_2)?\.(0\.conv|1)\.(\w+)", key):
        return f"bifpn.cells.{m[1]}.{m[2]}_in{m[3] or ''}.{m[4][0]}.{m[5]}"
    if (m := re.fullmatch(r"bifpn\.(\d+)\.(conv\d_(?:up|down))\.(depthwise_conv\.conv|pointwise_conv\.conv|bn)\."
                          r"(\w+)", key)) and m[2] in SEPARABLE:
        return f"bifpn.cells.{m[1]}.{SEPARABLE[m[2]]}.{SEPARABLE_PARTS[m[3]]}.{m[4]}"
    if (m := re.fullmatch(r"ssh([123])\.(\w+)\.([01])\.(.+)", key)) and m[2] in BRANCHES:
        base = f"ssh.{int(m[1]) - 1}.{BRANCHES[m[2]]}"
        if m[3] == "1":
            return f"{base}.bn.{m[4]}"
        if m[4] == "regular_conv.weight":
            return f"{base}.conv.weight"
        if mm := re.fullmatch(r"(offset_conv|modulator_conv)\.(weight|bias)", m[4]):
            return f"{base}.conv.offset_mask.{mm[2]}"
        return None
    if (m := re.fullmatch(r"(\w+Head)\.([012])\.conv1x1\.(weight|bias)", key)) and m[1] in HEADS:
        return f"heads.{HEADS[m[1]]}.convs.{m[2]}.{m[3]}"
    return None


def map_source_state_dict(state: Mapping[str, torch.Tensor], network: str | None = None) -> dict[str, torch.Tensor]:
    """Rename a source state dict (`module.` prefixes and thop buffers allowed) for this project's FeatherFace;
    each DCN's offset_conv (18 rows) and modulator_conv (9 rows) are stacked into one offset_mask conv, in that
    order. `network` only names the variant in messages. `SourceWeightsError` names the first key with no
    counterpart, or a DCN half without its pair."""
    what = f"{network} ({SOURCE_CLASSES.get(network, network)} layout)" if network else "this project's FeatherFace"
    mapped: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in strip_source_keys(state).items():
        name = project_key(key)
        if name is None:
            raise SourceWeightsError(f"source key {key!r} has no counterpart in {what}")
        if ".offset_mask." in name:
            pairs.setdefault(name, {})["offset_conv" if ".offset_conv." in key else "modulator_conv"] = value
        elif name in mapped:
            raise SourceWeightsError(f"source key {key!r} maps onto {name}, which another key already filled")
        else:
            mapped[name] = value
    for name, halves in pairs.items():
        conv = name.rsplit(".offset_mask", 1)[0]
        missing = [p for p in ("offset_conv", "modulator_conv") if p not in halves]
        if missing:
            raise SourceWeightsError(f"deformable conv {conv} has no {missing[0]} tensor (the source saves "
                                     "offset_conv and modulator_conv together)")
        offset, modulator = halves["offset_conv"], halves["modulator_conv"]
        if offset.shape[0] != 18 or modulator.shape[0] != 9 or offset.shape[1:] != modulator.shape[1:]:
            raise SourceWeightsError(f"deformable conv {conv}: offset_conv {tuple(offset.shape)} and modulator_conv "
                                     f"{tuple(modulator.shape)} are not the 18 + 9 channels of one 3x3 conv")
        mapped[name] = torch.cat([offset, modulator], dim=0)
    return mapped


def source_names(state: Iterable[str]) -> dict[str, str]:
    """This project's key -> the source key(s) it comes from, for messages that name the file's own key."""
    names: dict[str, str] = {}
    for key in state:
        name = project_key(key[len(PREFIX):] if key.startswith(PREFIX) else key)
        if name is not None:
            names[name] = f"{names[name]} + {key}" if name in names else key
    return names


def fit_state_dict(mapped: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], network: str,
                   names: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """`mapped` completed and checked against the model's own state dict: every key present (a missing BN
    `num_batches_tracked` is taken from the model, as for pre-0.4.1 files), none extra, every shape equal.
    `SourceWeightsError` names the first offending key (the file's own name too when `names` has it)."""
    names = names or {}
    missing = [k for k in own if k not in mapped and not k.endswith(OPTIONAL_SUFFIX)]
    extra = [k for k in mapped if k not in own]
    shapes = [k for k in own if k in mapped and tuple(mapped[k].shape) != tuple(own[k].shape)]
    counts = f"({len(missing)} missing, {len(extra)} unexpected, {len(shapes)} wrongly shaped)"
    if shapes:
        k = shapes[0]
        raise SourceWeightsError(f"does not fit {network}: {names.get(k, k)} has shape {tuple(mapped[k].shape)}, "
                                 f"{network} needs {tuple(own[k].shape)} for {k} {counts}")
    if missing:
        raise SourceWeightsError(f"does not fit {network}: no tensor for {missing[0]} {counts}")
    if extra:
        raise SourceWeightsError(f"does not fit {network}: unexpected {names.get(extra[0], extra[0])} {counts}")
    return {k: (mapped[k] if k in mapped else own[k]).to(own[k].dtype) for k in own}


def choose_network(found: str, network: str, wrapper_keys: Iterable[str] = ()) -> str:
    """The variant to build: `found` for "auto"; an explicit `network` only where the tensors fit it (the two
    ECA-CBAM designs share theirs, unless the source's training dict names the parallel one)."""
    if network == "auto":
        return found
    if network not in NETWORKS:
        raise SourceWeightsError(f"unknown network {network!r}; choose auto or one of {NETWORKS}")
    family = {"cbam": "cbam", "eca_cbam": "eca", "eca_cbam_parallel": "eca", "none": "none"}
    if family[network] != family[found]:
        held = {"cbam": "backbone_cbam_*", "none": "no attention tensors"}.get(found, "backbone_attention_*.eca/sam")
        raise SourceWeightsError(f"--network {network}, but the file holds {SOURCE_CLASSES[found]} tensors ({held})")
    if found == "eca_cbam_parallel" and network == "eca_cbam" and PARALLEL_MARKER in set(wrapper_keys):
        raise SourceWeightsError(f"--network eca_cbam, but the file's training dict names the parallel design "
                                 f"({PARALLEL_MARKER})")
    return network


def convert_source_file(path: Path | str, network: str = "auto") -> tuple[FeatherFace, SourceFile, str]:
    """Read, identify, rename and strictly load a source checkpoint; returns (model in eval mode, SourceFile,
    network). Every refusal is one `SourceWeightsError` line that starts with the file's path."""
    src = read_source_file(path)
    try:
        found = detect_source_variant(src.state, src.wrapper_keys)
        chosen = choose_network(found, network, src.wrapper_keys)
        model = build_model(chosen)
        own = model.state_dict()
        state = fit_state_dict(map_source_state_dict(src.state, chosen), own, chosen, source_names(src.state))
    except SourceWeightsError as exc:
        raise SourceWeightsError(f"{src.path}: {exc}") from None
    model.load_state_dict(state)
    return model.eval(), src, chosen
