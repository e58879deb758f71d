"""Importing the published RetinaFace-mobilenet0.25 weights: a state dict keyed exactly like the reference
(biubug6/Pytorch_Retinaface models/retinaface.py: `body` = IntermediateLayerGetter over MobileNetV1 stage1-3,
`fpn.output1..3` / `fpn.merge1..2` (conv_bn1X1 / conv_bn), `ssh1..3` with conv3X3, conv5X5_1, conv5X5_2,
conv7X7_2, conv7x7_3 (conv + BN each), `ClassHead` / `BboxHead` / `LandmarkHead` lists of `conv1x1`) loads
strictly into `retinaface_mnet`, tensor for tensor."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from core.checkpoint import load_checkpoint, read_checkpoint
from core.factory import build_model
from eval.deploy.import_retinaface import main
from eval.deploy.retinaface_weights import RetinaFaceWeightsError, load_retinaface_weights
from tests.conftest import exit_status
from tests.core.test_backbone_weights import reference_keys


def reference_state(seed: int = 0) -> OrderedDict:
    shapes: dict[str, tuple[int, ...]] = {f"body.{k}": s for k, s in reference_keys(True).items()
                                          if not k.startswith("fc.")}

    def conv_bn(prefix: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{prefix}.0.weight"] = (cout, cin, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{name}"] = (cout,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()

    for i, cin in enumerate((64, 128, 256), start=1):
        conv_bn(f"fpn.output{i}", 64, cin, 1)
    for i in (1, 2):
        conv_bn(f"fpn.merge{i}", 64, 64, 3)
    for i in (1, 2, 3):
        conv_bn(f"ssh{i}.conv3X3", 32, 64, 3)
        conv_bn(f"ssh{i}.conv5X5_1", 16, 64, 3)
        for branch in ("conv5X5_2", "conv7X7_2", "conv7x7_3"):
            conv_bn(f"ssh{i}.{branch}", 16, 16, 3)
    for head, per in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for i in range(3):
            shapes[f"{head}.{i}.conv1x1.weight"] = (2 * per, 64, 1, 1)
            shapes[f"{head}.{i}.conv1x1.bias"] = (2 * per,)
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.tensor(7) if not s else torch.randn(s, generator=gen)) for k, s in shapes.items())


def test_reference_layout_has_the_published_parameter_count():
    params = sum(v.numel() for k, v in reference_state().items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert params == 426_608 == build_model("retinaface_mnet").get_parameter_count()["total"]


@pytest.mark.parametrize("prefix,wrapped", [("", False), ("module.", False), ("module.", True)])
def test_loads_tensor_for_tensor(tmp_path, prefix, wrapped):
    state = reference_state()
    payload = OrderedDict((prefix + k, v) for k, v in state.items())
    torch.save({"state_dict": payload} if wrapped else payload, tmp_path / "mobilenet0.25_Final.pth")
    model = build_model("retinaface_mnet")
    sha = load_retinaface_weights(model, tmp_path / "mobilenet0.25_Final.pth")
    assert len(sha) == 64
    own = model.state_dict()
    assert torch.equal(own["heads.cls.convs.2.weight"], state["ClassHead.2.conv1x1.weight"])
    assert torch.equal(own["heads.landmark.convs.0.bias"], state["LandmarkHead.0.conv1x1.bias"])
    assert torch.equal(own["fpn.lateral.2.0.weight"], state["fpn.output3.0.weight"])
    assert torch.equal(own["fpn.merge.0.1.running_var"], state["fpn.merge1.1.running_var"])
    assert torch.equal(own["ssh.2.conv7x7_3.bn.running_var"], state["ssh3.conv7x7_3.1.running_var"])
    assert torch.equal(own["ssh.0.conv3x3.conv.weight"], state["ssh1.conv3X3.0.weight"])
    assert torch.equal(own["body.stage3.1.3.weight"], state["body.stage3.1.3.weight"])


def test_strict_errors_and_wrong_model(tmp_path):
    state = reference_state()
    state.pop("BboxHead.1.conv1x1.bias")
    torch.save(state, tmp_path / "a.pth")
    with pytest.raises(RetinaFaceWeightsError, match="missing key heads.bbox.convs.1.bias"):
        load_retinaface_weights(build_model("retinaface_mnet"), tmp_path / "a.pth")
    state = reference_state()
    state["ssh4.conv3X3.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "b.pth")
    with pytest.raises(RetinaFaceWeightsError, match="unexpected key ssh4.conv3X3.0.weight"):
        load_retinaface_weights(build_model("retinaface_mnet"), tmp_path / "b.pth")
    with pytest.raises(RetinaFaceWeightsError, match="not the RetinaFace-mobilenet0.25 layout"):
        load_retinaface_weights(build_model("cbam"), tmp_path / "b.pth")


def test_cli_writes_a_checkpoint_eval_predict_loads(tmp_path, capsys):
    torch.save(reference_state(), tmp_path / "mobilenet0.25_Final.pth")
    out = tmp_path / "retinaface_mnet.pth"
    assert main(["--weights", str(tmp_path / "mobilenet0.25_Final.pth"), "--out", str(out)]) == 0
    model, meta = load_checkpoint(out, expected_name="retinaface_mnet")
    assert meta["source"]["file"] == "mobilenet0.25_Final.pth" and len(meta["source"]["sha256"]) == 64
    assert torch.equal(model.state_dict()["heads.bbox.convs.0.weight"], reference_state()["BboxHead.0.conv1x1.weight"])
    assert read_checkpoint(out)["model_name"] == "retinaface_mnet"
    assert exit_status(main, ["--weights", str(tmp_path / "nope.pth"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
