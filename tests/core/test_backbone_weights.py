"""ImageNet backbone weights in RetinaFace's format: loading, strict checks, run.json, and the pretraining
script's round trip.

REFERENCE_KEYS is written from biubug6/Pytorch_Retinaface `models/net.py` (class MobileNetV1: `stage1` =
conv_bn(3, 8, 2) then five conv_dw, `stage2` = six conv_dw, `stage3` = two conv_dw, then `avg` and
`fc = nn.Linear(256, 1000)`; conv_bn = [Conv2d, BatchNorm2d, LeakyReLU], conv_dw = [dw Conv2d, BN, LeakyReLU,
pw Conv2d, BN, LeakyReLU]), independently of this project's modules, so a real user's file loads.
"""

from __future__ import annotations

import json
import tarfile
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.backbone_weights import BackboneWeightsError, load_backbone_weights, read_backbone_state
from core.factory import build_model
from core.synth.generate import generate_dataset
from tests.conftest import exit_status
from train.cli import main as train_main
from train.pretrain_backbone import main as pretrain_main

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = {
    "stage1": [("bn", 3, 8), ("dw", 8, 16), ("dw", 16, 32), ("dw", 32, 32), ("dw", 32, 64), ("dw", 64, 64)],
    "stage2": [("dw", 64, 128)] + [("dw", 128, 128)] * 5,
    "stage3": [("dw", 128, 256), ("dw", 256, 256)],
}


def reference_keys(batches_tracked: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the reference MobileNetV1 classifier's state dict (no `module.` prefix)."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        if batches_tracked:
            keys[f"{prefix}.num_batches_tracked"] = ()

    for stage, blocks in STAGES.items():
        for i, (kind, cin, cout) in enumerate(blocks):
            if kind == "bn":
                keys[f"{stage}.{i}.0.weight"] = (cout, cin, 3, 3)
                bn(f"{stage}.{i}.1", cout)
            else:
                keys[f"{stage}.{i}.0.weight"] = (cin, 1, 3, 3)
                bn(f"{stage}.{i}.1", cin)
                keys[f"{stage}.{i}.3.weight"] = (cout, cin, 1, 1)
                bn(f"{stage}.{i}.4", cout)
    keys["fc.weight"], keys["fc.bias"] = (1000, 256), (1000,)
    return keys


def reference_file(path: Path, batches_tracked: bool = False, legacy: bool = True, seed: int = 0,
                   edit=None) -> dict[str, torch.Tensor]:
    """A file shaped like mobilenetV1X0.25_pretrain.tar; returns its unprefixed tensors."""
    gen = torch.Generator().manual_seed(seed)
    tensors = OrderedDict()
    for key, shape in reference_keys(batches_tracked).items():
        if key.endswith("num_batches_tracked"):
            tensors[key] = torch.tensor(1234)
        elif key.endswith("running_var"):
            tensors[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            tensors[key] = torch.randn(shape, generator=gen)
    if edit is not None:
        edit(tensors)
    payload = {"epoch": 150, "arch": "mobilenet0.25", "best_prec1": 63.2,
               "state_dict": OrderedDict(("module." + k, v) for k, v in tensors.items())}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return tensors


@pytest.mark.parametrize("suffix,legacy,tracked", [(".tar", True, False), (".pth", False, True),
                                                    (".pth.tar", True, True)])
def test_reference_format_loads_into_every_body(tmp_path, suffix, legacy, tracked):
    path = tmp_path / f"mobilenetV1X0.25_pretrain{suffix}"
    tensors = reference_file(path, batches_tracked=tracked, legacy=legacy)
    assert not tarfile.is_tarfile(path)  # the ".tar" is a torch.save file, not an archive
    for name in ("cbam", "retinaface_mnet"):
        model = build_model(name, backbone_weights=path)
        body = model.body.state_dict()
        for key, value in tensors.items():
            if not key.startswith("fc."):
                assert torch.equal(body[key], value), key
        assert all(not k.startswith("fc.") for k in body)
    info = load_backbone_weights(build_model("none").body, path)
    assert info.name == path.name and len(info.sha256) == 64 and info.tensors == len(tensors) - 2


def test_bare_state_dict_without_prefix_also_loads(tmp_path):
    body = build_model("none").body
    torch.save(body.state_dict(), tmp_path / "plain.pth")
    assert set(read_backbone_state(tmp_path / "plain.pth")) == set(body.state_dict())
    load_backbone_weights(build_model("none").body, tmp_path / "plain.pth")


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("stage2.3.4.running_var"), "missing key stage2.3.4.running_var"),
    (lambda t: t.__setitem__("stage4.0.0.weight", torch.zeros(1)), "unexpected key stage4.0.0.weight"),
    (lambda t: t.__setitem__("stage1.0.0.weight", torch.zeros(16, 3, 3, 3)),
     r"wrong shape stage1.0.0.weight \(16, 3, 3, 3\) \(model: \(8, 3, 3, 3\)\)"),
])
def test_strict_check_names_the_key(tmp_path, edit, message):
    path = tmp_path / "bad.tar"
    reference_file(path, edit=edit)
    model = build_model("cbam")
    before = {k: v.clone() for k, v in model.body.state_dict().items()}
    with pytest.raises(BackboneWeightsError, match=message):
        load_backbone_weights(model.body, path)
    assert all(torch.equal(before[k], v) for k, v in model.body.state_dict().items())  # nothing half-loaded


def test_unreadable_and_unsafe_files(tmp_path):
    archive = tmp_path / "extracted.tar"
    with tarfile.open(archive, "w") as tar:
        (tmp_path / "x.txt").write_text("x")
        tar.add(tmp_path / "x.txt", arcname="x.txt")
    with pytest.raises(BackboneWeightsError, match="not a tar archive"):
        load_backbone_weights(build_model("none").body, archive)
    with pytest.raises(BackboneWeightsError, match="not found"):
        load_backbone_weights(build_model("none").body, tmp_path / "missing.tar")
    torch.save({"epoch": 1}, tmp_path / "nodict.pth")
    with pytest.raises(BackboneWeightsError, match="no state dict"):
        load_backbone_weights(build_model("none").body, tmp_path / "nodict.pth")
    torch.save({"state_dict": {"stage1.0.0.weight": torch.zeros(1)}, "obj": Path("x")}, tmp_path / "unsafe.pth")
    with pytest.raises(BackboneWeightsError, match="refused"):
        load_backbone_weights(build_model("none").body, tmp_path / "unsafe.pth")


# Train --backbone-weights

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("bb") / "synth", num_train=4, num_val=0, seed=3)


def _args(data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["--network", "none", "--data", str(data), "--out", str(out), "--run-name", name, "--max-epoch", "1",
            "--batch-size", "4", "--img-size", "64", "--workers", "0", "--eval-every", "0", "--no-progress",
            "--device", "cpu", *extra]


def test_train_records_the_backbone_in_run_json(synth, tmp_path, capsys):
    path = tmp_path / "mobilenetV1X0.25_pretrain.tar"
    reference_file(path)
    assert train_main(_args(synth, tmp_path, "pre", "--backbone-weights", str(path))) == 0
    meta = json.loads((tmp_path / "pre" / "run.json").read_text())
    from core.backbone_weights import file_sha256
    assert meta["backbone_weights"]["name"] == path.name
    assert meta["backbone_weights"]["sha256"] == file_sha256(path)
    assert "randomly initialised backbone" not in capsys.readouterr().err
    assert exit_status(train_main, _args(synth, tmp_path, "bad", "--backbone-weights", str(tmp_path / "nope.tar"))) == 2
    err = capsys.readouterr().err
    assert "--backbone-weights" in err and "nope.tar': file not found" in err and not (tmp_path / "bad").exists()


def test_full_length_run_from_random_init_warns(synth, tmp_path, capsys, monkeypatch):
    from train.trainer import Trainer

    def stop(self, resumed):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_open_writer", stop)  # after the model is built, before any step
    with pytest.raises(KeyboardInterrupt):
        train_main([*_args(synth, tmp_path, "long"), "--max-epoch", "100"])
    assert "100 epochs from a randomly initialised backbone" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        train_main([*_args(synth, tmp_path, "short"), "--max-epoch", "99"])
    assert "randomly initialised" not in capsys.readouterr().err


# Python -m train.pretrain_backbone

def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for c, colour in enumerate(((40, 40, 200), (200, 60, 40))):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                img = np.clip(rng.normal(colour, 30, size=(40, 48, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i}.png"), img)
    return root


def test_pretrain_writes_the_reference_format_and_round_trips(tmp_path):
    data = image_folder(tmp_path / "imgs")
    out = tmp_path / "mobilenetV1X0.25_pretrain.tar"
    assert pretrain_main(["--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "4",
                          "--img-size", "32", "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    saved = torch.load(out, weights_only=True)
    assert saved["epoch"] == 2 and saved["arch"] == "mobilenet0.25" and 0.0 <= saved["best_prec1"] <= 100.0
    state = saved["state_dict"]
    assert all(k.startswith("module.") for k in state)
    unprefixed = {k[len("module."):]: tuple(v.shape) for k, v in state.items()}
    expected = reference_keys(batches_tracked=True)
    expected["fc.weight"], expected["fc.bias"] = (2, 256), (2,)  # two classes here
    assert unprefixed == expected
    model = build_model("eca_cbam", backbone_weights=out)
    for key, value in model.body.state_dict().items():
        assert torch.equal(value, state["module." + key]), key


def test_pretrain_refuses_a_bad_folder(tmp_path, capsys):
    (tmp_path / "one" / "only").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "one" / "only" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert pretrain_main(["--data", str(tmp_path / "one"), "--out", str(tmp_path / "o.tar"), "--device", "cpu"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert exit_status(pretrain_main, ["--data", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert "--data" in (err := capsys.readouterr().err) and "folder not found" in err
