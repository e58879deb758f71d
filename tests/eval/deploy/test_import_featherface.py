"""Importing the seed source's checkpoints (fokouarnaud/FeatherFace @ f023145) with `eval.deploy.import_featherface`.

`source_state` writes the source's key layout from its model files, independently of this project's modules:
models/featherface_eca_cbam.py (`backbone_attention_i` / `bifpn_attention_i` = ECAcbaM with `eca.conv` and
`sam.conv`), models/featherface_cbam_exact.py (`backbone_cbam_i` / `bif_cbam_i` = net.py's CBAM: ChannelGate.mlp =
[Flatten, Linear, ReLU, Linear], SpatialGate.spatial = BasicConv(conv, bn)), net.py's BiFPN (three cells, the first
with `p{3,4,5}_down_channel` and `p{4,5}_down_channel_2` = [Conv2dStaticSamePadding(.conv), BatchNorm2d], fusion
weights `p4_w1`, `p3_w1`, `p4_w2`, `p5_w2`, SeparableConvBlocks `conv{4,3}_up` / `conv{4,5}_down`), SSH branches of
DeformableConv2d (`offset_conv`, `modulator_conv`, `regular_conv`) + BatchNorm2d, and the three head lists.

The earlier architectures' keys come from the files in the source's history (git show 17aa64d / 503d2c5:
weights/mobilenet0.25_Final.pth, 078fbd7:weights/v2/featherface_v2_best.pth): small fakes with those names.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from core.factory import build_model
from eval.deploy.import_featherface import main
from eval.deploy.source_weights import (
    SourceWeightsError,
    convert_source_file,
    detect_source_variant,
    map_source_state_dict,
)
from tests.conftest import exit_status
from tests.core.test_backbone_weights import reference_keys
from tests.eval.deploy.test_retinaface_weights import reference_state

REFERENCE = Path(__file__).resolve().parents[4] / "shared" / "reference" / "featherface_eca_cbam"
if not REFERENCE.is_dir():
    REFERENCE = Path("/work/shared/reference/featherface_eca_cbam")
FINAL = REFERENCE / "featherface_eca_cbam_final.pth"
FINAL_SHA = "81cdeffd35c13e2123d63080c9bd16a9eebe6f8e0579994ad6322b6393a10666"  # SOURCES.md
MIRROR = Path(os.environ.get("FEATHERFACE_SOURCE_MIRROR", "/work/.mirror/fokouarnaud+FeatherFace/repo"))
ECA_K = {64: 3, 128: 5, 256: 5, 52: 3}  # the source's ECA kernel sizes (k = |log2(C)/2 + 1/2| made odd)
BRANCHES = (("conv3X3", "in", 2), ("conv5X5_1", "in", 4), ("conv5X5_2", "q", 4), ("conv7X7_2", "q", 4),
            ("conv7x7_3", "q", 4))


def bn(shapes: dict, prefix: str, c: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{name}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def source_shapes(network: str, channels: int = 52, cells: int = 3) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the source's state dict for `network` ("eca_cbam" or "cbam")."""
    shapes: dict[str, tuple[int, ...]] = {f"body.{k}": s for k, s in reference_keys(True).items()
                                          if not k.startswith("fc.")}
    levels = [("backbone", i, c) for i, c in enumerate((64, 128, 256))] + [("bifpn", i, channels) for i in range(3)]
    for where, i, c in levels:
        if network == "cbam":
            name = f"backbone_cbam_{i}" if where == "backbone" else f"bif_cbam_{i}"
            gate = f"{name}.ChannelGate.mlp"
            shapes[f"{gate}.1.weight"], shapes[f"{gate}.1.bias"] = (c // 16, c), (c // 16,)
            shapes[f"{gate}.3.weight"], shapes[f"{gate}.3.bias"] = (c, c // 16), (c,)
            shapes[f"{name}.SpatialGate.spatial.conv.weight"] = (1, 2, 7, 7)
            bn(shapes, f"{name}.SpatialGate.spatial.bn", 1)
        else:
            shapes[f"{where}_attention_{i}.eca.conv.weight"] = (1, 1, ECA_K.get(c, 3))
            shapes[f"{where}_attention_{i}.sam.conv.weight"] = (1, 2, 7, 7)
    for n in range(cells):
        for w, size in (("p4_w1", 2), ("p3_w1", 2), ("p4_w2", 3), ("p5_w2", 3)):
            shapes[f"bifpn.{n}.{w}"] = (size,)
        for conv in ("conv4_up", "conv3_up", "conv4_down", "conv5_down"):
            shapes[f"bifpn.{n}.{conv}.depthwise_conv.conv.weight"] = (channels, 1, 3, 3)
            shapes[f"bifpn.{n}.{conv}.pointwise_conv.conv.weight"] = (channels, channels, 1, 1)
            shapes[f"bifpn.{n}.{conv}.pointwise_conv.conv.bias"] = (channels,)
            bn(shapes, f"bifpn.{n}.{conv}.bn", channels)
        if n == 0:
            for proj, cin in (("p5_down_channel", 256), ("p4_down_channel", 128), ("p3_down_channel", 64),
                              ("p4_down_channel_2", 128), ("p5_down_channel_2", 256)):
                shapes[f"bifpn.0.{proj}.0.conv.weight"] = (channels, cin, 1, 1)
                shapes[f"bifpn.0.{proj}.0.conv.bias"] = (channels,)
                bn(shapes, f"bifpn.0.{proj}.1", channels)
    for k in (1, 2, 3):
        for branch, src, div in BRANCHES:
            cin = channels if src == "in" else channels // 4
            shapes[f"ssh{k}.{branch}.0.offset_conv.weight"] = (18, cin, 3, 3)
            shapes[f"ssh{k}.{branch}.0.offset_conv.bias"] = (18,)
            shapes[f"ssh{k}.{branch}.0.modulator_conv.weight"] = (9, cin, 3, 3)
            shapes[f"ssh{k}.{branch}.0.modulator_conv.bias"] = (9,)
            shapes[f"ssh{k}.{branch}.0.regular_conv.weight"] = (channels // div, cin, 3, 3)
            bn(shapes, f"ssh{k}.{branch}.1", channels // div)
    for head, per in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for i in range(3):
            shapes[f"{head}.{i}.conv1x1.weight"] = (2 * per, channels, 1, 1)
            shapes[f"{head}.{i}.conv1x1.bias"] = (2 * per,)
    return shapes


def make_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> OrderedDict:
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.tensor(9) if not s else torch.randn(s, generator=gen)) for k, s in shapes.items())


def source_state(network: str = "eca_cbam", seed: int = 0) -> OrderedDict:
    return make_state(source_shapes(network), seed)


def params(state: dict) -> int:
    return sum(v.numel() for k, v in state.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("network,tensors,count", [("eca_cbam", 485, 476_345), ("cbam", 533, 488_664)])
def test_source_layout_has_the_published_size(network, tensors, count):
    state = source_state(network)
    assert len(state) == tensors and params(state) == count == build_model(network).get_parameter_count()["total"]


@pytest.mark.parametrize("network", ["eca_cbam", "cbam"])
@pytest.mark.parametrize("wrap", ["plain", "module.", "state_dict", "model_state_dict"])
def test_converts_tensor_for_tensor(tmp_path, capsys, network, wrap):
    state = source_state(network)
    payload = OrderedDict((("module." if wrap == "module." else "") + k, v) for k, v in state.items())
    if wrap in ("state_dict", "model_state_dict"):
        payload = {wrap: payload, "epoch": 7, "optimizer_state_dict": {"state": {}, "param_groups": []}}
    torch.save(payload, tmp_path / "src.pth")
    assert run_cli("--checkpoint", tmp_path / "src.pth", "--out", tmp_path / "out.pth") == 0
    assert f"-> {tmp_path / 'out.pth'}: {network}" in capsys.readouterr().out
    model, meta = load_checkpoint(tmp_path / "out.pth", expected_name=network)
    assert meta["source"]["file"] == "src.pth" and len(meta["source"]["sha256"]) == 64
    assert meta["dataset"] == "widerface" and meta.get("epoch") == (7 if wrap.endswith("state_dict") else None)
    own = model.state_dict()
    assert sum(v.numel() for v in own.values()) == sum(v.numel() for v in state.values())
    dcn = own["ssh.2.conv7x7_3.conv.offset_mask.weight"]
    assert torch.equal(dcn[:18], state["ssh3.conv7x7_3.0.offset_conv.weight"])
    assert torch.equal(dcn[18:], state["ssh3.conv7x7_3.0.modulator_conv.weight"])
    assert torch.equal(own["ssh.0.conv5x5_2.conv.weight"], state["ssh1.conv5X5_2.0.regular_conv.weight"])
    assert torch.equal(own["ssh.1.conv3x3.bn.running_var"], state["ssh2.conv3X3.1.running_var"])
    assert torch.equal(own["bifpn.cells.2.fuse_p5_out.weight"], state["bifpn.2.p5_w2"])
    assert torch.equal(own["bifpn.cells.1.fuse_p4_td.weight"], state["bifpn.1.p4_w1"])
    assert torch.equal(own["bifpn.cells.0.conv_p3_out.depthwise.weight"],
                      state["bifpn.0.conv3_up.depthwise_conv.conv.weight"])
    assert torch.equal(own["bifpn.cells.0.p5_in_2.0.weight"], state["bifpn.0.p5_down_channel_2.0.conv.weight"])
    assert torch.equal(own["heads.landmark.convs.2.bias"], state["LandmarkHead.2.conv1x1.bias"])
    if network == "cbam":
        assert torch.equal(own["bifpn_attention.1.channel_gate.mlp.2.weight"],
                          state["bif_cbam_1.ChannelGate.mlp.3.weight"])
        assert torch.equal(own["backbone_attention.0.spatial_gate.bn.running_mean"],
                          state["backbone_cbam_0.SpatialGate.spatial.bn.running_mean"])
    else:
        assert torch.equal(own["backbone_attention.2.channel_gate.conv.weight"],
                          state["backbone_attention_2.eca.conv.weight"])
        assert torch.equal(own["bifpn_attention.0.spatial_gate.conv.weight"],
                           state["bifpn_attention_0.sam.conv.weight"])


def test_parallel_from_the_training_dict_or_on_request(tmp_path, capsys):
    state = source_state("eca_cbam")
    torch.save({"model_state_dict": state, "epoch": 50, "eca_cbam_parallel_config": {"eca_gamma": 2}},
               tmp_path / "epoch_50.pth")
    assert run_cli("--checkpoint", tmp_path / "epoch_50.pth", "--out", tmp_path / "par.pth") == 0
    assert read_checkpoint(tmp_path / "par.pth")["model_name"] == "eca_cbam_parallel"
    assert run_cli("--checkpoint", tmp_path / "epoch_50.pth", "--out", tmp_path / "seq.pth",
                   "--network", "eca_cbam") == 2
    assert "names the parallel design" in capsys.readouterr().err and not (tmp_path / "seq.pth").exists()
    torch.save(state, tmp_path / "plain.pth")  # plain state dict: same tensors for both designs, either is taken
    assert run_cli("--checkpoint", tmp_path / "plain.pth", "--out", tmp_path / "p2.pth",
                   "--network", "eca_cbam_parallel", "--trained-by", "someone", "--epoch", "12") == 0
    meta = read_checkpoint(tmp_path / "p2.pth")
    assert meta["model_name"] == "eca_cbam_parallel" and meta["epoch"] == 12
    assert meta["source"]["trained_by"] == "someone"


def fake(extra: dict[str, tuple[int, ...]], channels: int = 56, cells: int = 2) -> OrderedDict:
    """The body, `cells` BiFPN cells, SSHs and heads at `channels`, plus `extra` keys: an earlier source file."""
    shapes = {k: s for k, s in source_shapes("eca_cbam", channels, cells).items() if "attention_" not in k}
    shapes.update(extra)
    return make_state(shapes)


EARLIER = {
    # 503d2c5:weights/mobilenet0.25_Final.pth: 56 channels, bifpn.0 and bifpn.1, no attention module
    "two_cell_56": (fake({}), "56-channel 2-cell BiFPN"),
    # 17aa64d:weights/mobilenet0.25_Final.pth: 64 channels, misspelt backbone CBAMs, ssh*_cs shuffle convs
    "cbam_64": (fake({"bacbkbone_0_cbam.ChannelGate.mlp.1.weight": (4, 64),
                      "bacbkbone_0_cbam.SpatialGate.spatial.conv.weight": (1, 2, 7, 7),
                      "bif_cbam_0.ChannelGate.mlp.1.weight": (4, 64), "ssh1_cs.1.weight": (32, 64, 1, 1),
                      "ssh1_cs.3.weight": (32, 1, 3, 3)}, channels=64, cells=3), "bacbkbone_*_cbam / ssh*_cs"),
    # 078fbd7:weights/v2/featherface_v2_best.pth: coordinate attention on P3-P5
    "v2": (fake({"ca_p3.conv_transform.weight": (8, 56, 1, 1), "ca_p3.conv_h.weight": (56, 8, 1, 1),
                 "ca_p3.conv_w.weight": (56, 8, 1, 1), "ca_p4.conv_h.weight": (56, 8, 1, 1)}), "featherface_v2"),
}


def refused(tmp_path: Path, capsys, src: Path, needle: str, **kw: str) -> str:
    """Exit 2, one stderr line containing `needle`, and the existing --out untouched."""
    out = tmp_path / "out.pth"
    out.write_bytes(b"previous conversion")
    before = out.stat().st_mtime_ns
    args = ["--checkpoint", src, "--out", out] + [x for k, v in kw.items() for x in (f"--{k}", v)]
    assert exit_status(main, [str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and needle in err, err
    assert out.read_bytes() == b"previous conversion" and out.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind
    return err


@pytest.mark.parametrize("name", list(EARLIER))
def test_earlier_architectures_refused(tmp_path, capsys, name):
    state, needle = EARLIER[name]
    torch.save(state, tmp_path / f"{name}.pth")
    err = refused(tmp_path, capsys, tmp_path / f"{name}.pth", needle)
    assert "earlier FeatherFace architecture" in err


def test_retinaface_file_points_to_its_importer(tmp_path, capsys):
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in reference_state().items())},
               tmp_path / "mobilenet0.25_Final.pth")
    refused(tmp_path, capsys, tmp_path / "mobilenet0.25_Final.pth", "python -m eval.import_retinaface")


def test_bad_files_refused(tmp_path, capsys):
    (tmp_path / "empty.pth").write_bytes(b"")
    refused(tmp_path, capsys, tmp_path / "empty.pth", "is empty (0 bytes)")
    (tmp_path / "notes.pth").write_text("epoch 350: loss 2.1\n" * 40)
    refused(tmp_path, capsys, tmp_path / "notes.pth", "is not a PyTorch checkpoint: it is text")
    torch.save(source_state(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    refused(tmp_path, capsys, tmp_path / "cut.pth", "is truncated or corrupt")
    torch.save({"args": argparse.Namespace(lr=1e-3), "state_dict": source_state()}, tmp_path / "pickled.pth")
    refused(tmp_path, capsys, tmp_path / "pickled.pth", "argparse.Namespace")
    refused(tmp_path, capsys, tmp_path / "missing.pth", "missing.pth': file not found")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    refused(tmp_path, capsys, tmp_path / "list.pth", "holds list, not a state dict")
    save_checkpoint(tmp_path / "ours.pth", build_model("cbam"))
    refused(tmp_path, capsys, tmp_path / "ours.pth", "already a FeatherFace Lab checkpoint (model 'cbam')")


def test_mismatches_name_the_key(tmp_path, capsys):
    state = source_state()
    state["ssh2.conv5X5_1.0.regular_conv.weight"] = torch.zeros(14, 52, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    refused(tmp_path, capsys, tmp_path / "shape.pth", "ssh2.conv5X5_1.0.regular_conv.weight has shape (14, 52, 3, 3)")
    state = source_state()
    del state["ssh1.conv3X3.0.modulator_conv.weight"]
    torch.save(state, tmp_path / "half.pth")
    refused(tmp_path, capsys, tmp_path / "half.pth", "has no modulator_conv tensor")
    state = source_state()
    state["bifpn.0.p6_w1"] = torch.ones(2)
    torch.save(state, tmp_path / "extra.pth")
    refused(tmp_path, capsys, tmp_path / "extra.pth", "'bifpn.0.p6_w1' has no counterpart")
    state = source_state()
    del state["LandmarkHead.1.conv1x1.bias"]
    torch.save(state, tmp_path / "missing_key.pth")
    refused(tmp_path, capsys, tmp_path / "missing_key.pth", "no tensor for heads.landmark.convs.1.bias")
    torch.save(source_state(), tmp_path / "eca.pth")
    refused(tmp_path, capsys, tmp_path / "eca.pth", "holds FeatherFaceECAcbaM tensors", network="cbam")


def test_out_is_never_the_source(tmp_path, capsys):
    torch.save(source_state(), tmp_path / "src.pth")
    before = (tmp_path / "src.pth").read_bytes()
    assert run_cli("--checkpoint", tmp_path / "src.pth", "--out", tmp_path / "src.pth") == 2
    assert "is the source file itself" in capsys.readouterr().err and (tmp_path / "src.pth").read_bytes() == before


# The real files


@pytest.mark.skipif(not FINAL.is_file(), reason=f"the source's trained checkpoint is not at {FINAL}")
def test_real_final_checkpoint(tmp_path, capsys):
    assert run_cli("--checkpoint", FINAL, "--out", tmp_path / "eca.pth", "--epoch", "350") == 0
    assert "485 tensors" in capsys.readouterr().out
    model, meta = load_checkpoint(tmp_path / "eca.pth", expected_name="eca_cbam")
    assert meta["source"]["sha256"] == FINAL_SHA and meta["epoch"] == 350
    assert model.get_parameter_count()["total"] == 476_345


@pytest.mark.skipif(not (REFERENCE / "featherface_eca_cbam_epoch_50.pth").is_file(),
                    reason="the source's epoch checkpoints are not in ../shared/reference")
def test_real_epoch_checkpoint_saved_on_cuda(tmp_path):
    path = REFERENCE / "featherface_eca_cbam_epoch_50.pth"
    if not torch.cuda.is_available():  # the file really holds CUDA storages: a plain load fails on this machine
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    model, src, network = convert_source_file(path)
    assert network == "eca_cbam" and src.epoch == 50 and len(src.state) == 485
    assert all(p.device.type == "cpu" for p in model.parameters())


HISTORY = [("503d2c5", "weights/mobilenet0.25_Final.pth", "56-channel 2-cell BiFPN"),
           ("17aa64d", "weights/mobilenet0.25_Final.pth", "bacbkbone_*_cbam / ssh*_cs"),
           ("078fbd7", "weights/v2/featherface_v2_best.pth", "featherface_v2")]


@pytest.mark.skipif(not (MIRROR / "HEAD").is_file() and not (MIRROR / ".git").exists(),
                    reason=f"no git mirror of fokouarnaud/FeatherFace at {MIRROR} (set FEATHERFACE_SOURCE_MIRROR)")
@pytest.mark.parametrize("commit,path,needle", HISTORY)
def test_real_files_from_the_source_history_refused(tmp_path, commit, path, needle):
    blob = subprocess.run(["git", "-C", str(MIRROR), "show", f"{commit}:{path}"], capture_output=True, check=False)
    if blob.returncode != 0 or not blob.stdout.startswith(b"PK"):
        pytest.skip(f"{commit}:{path} is not in the mirror")
    (tmp_path / "old.pth").write_bytes(blob.stdout)
    with pytest.raises(SourceWeightsError, match="earlier FeatherFace architecture") as exc:
        convert_source_file(tmp_path / "old.pth")
    assert needle in str(exc.value)


def test_attention_free_layout_and_profiler_buffers(tmp_path, capsys):
    """The f023145 layout without attention tensors is `none` (no source class, but the same parts); thop's
    total_ops / total_params buffers, left in some of the source's files, are dropped."""
    state = {k: v for k, v in source_state().items() if "attention_" not in k}
    assert detect_source_variant(state) == "none"
    torch.save({"module." + k: v for k, v in state.items()} | {"module.body.total_ops": torch.zeros(1)},
               tmp_path / "plain.pth")
    assert run_cli("--checkpoint", tmp_path / "plain.pth", "--out", tmp_path / "none.pth") == 0
    assert read_checkpoint(tmp_path / "none.pth")["model_name"] == "none"
    refused(tmp_path, capsys, tmp_path / "plain.pth", "holds attention-free tensors", network="eca_cbam")
    eca = source_state()
    assert map_source_state_dict(eca).keys() == map_source_state_dict({"module." + k: v for k, v in eca.items()}
                                                                      | {"bifpn.0.total_params": torch.zeros(1)}).keys()
    eca["ssh1.conv3X3.0.modulator_conv.weight"] = torch.zeros(10, 52, 3, 3)
    with pytest.raises(SourceWeightsError, match="not the 18 \\+ 9 channels"):
        map_source_state_dict(eca)
