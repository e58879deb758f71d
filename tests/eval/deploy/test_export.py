"""ONNX export: the DeformConv node computes torchvision's DCNv2, the CLI writes only verified files,
bad checkpoints are refused, and ONNX Runtime sessions stand in for the PyTorch forward."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torchvision.ops import deform_conv2d

from core.checkpoint import save_checkpoint
from core.config import MODEL_CONFIGS
from core.layers.deform_conv import ModulatedDeformConv2d
from eval.deploy.export import export_model, main
from eval.deploy.onnx_export import OUTPUT_NAMES, OnnxExportError, _DeformConvOp, export_onnx_bytes, export_ready
from eval.deploy.onnx_runtime import OnnxRuntimeModel, runtime_for
from tests.conftest import exit_status, realistic_model


def test_native_deform_conv_node_equals_torchvision():
    """Large offsets (taps far outside the image) and a learned mask: ONNX Runtime's DeformConv must
    follow torchvision's offset layout and zero padding exactly."""
    torch.manual_seed(1)
    dcn = ModulatedDeformConv2d(13, 7).eval()
    dcn.offset_mask.weight.data.normal_(0, 0.5)
    dcn.offset_mask.bias.data.normal_(0, 2.0)
    x = torch.randn(2, 13, 11, 17)
    buf = io.BytesIO()
    torch.onnx.export(export_ready(torch.nn.Sequential(dcn)), (x,), buf, dynamo=False, opset_version=19,
                      input_names=["input"])
    assert [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node].count("DeformConv") == 1
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        om = dcn.offset_mask(x)
        ref = deform_conv2d(x, om[:, :18], dcn.weight, None, padding=1, mask=2 * torch.sigmoid(om[:, 18:]))
    np.testing.assert_allclose(got, ref.numpy(), atol=2e-5, rtol=1e-5)
    assert float(om[:, :18].abs().max()) > 5  # the offsets really reach outside the 11 x 17 input


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_export_round_trip_every_entry(name, tmp_path, capsys):
    """Checkpoint -> CLI -> file -> ONNX Runtime equals the PyTorch model on another input."""
    model = realistic_model(name, seed=2)
    weights = tmp_path / f"{name}.pth"
    save_checkpoint(weights, model)
    out = tmp_path / "sub" / f"{name}.onnx"
    assert main(["--network", name, "--trained-model", str(weights), "--out", str(out), "--size", "96", "128"]) == 0
    assert "onnx.checker ok" in capsys.readouterr().out
    graph = onnx.load(str(out)).graph
    assert tuple(o.name for o in graph.output) == OUTPUT_NAMES
    assert sum(n.op_type == "DeformConv" for n in graph.node) == (15 if MODEL_CONFIGS[name].deformable_ssh else 0)
    assert not any(n.op_type == "BatchNormalization" for n in graph.node)
    x = torch.randn(1, 3, 96, 128) * 60
    with torch.inference_mode():
        ref = model(x)
    got = OnnxRuntimeModel(out, threads=1)(x)
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_dynamic_export_runs_at_other_sizes_and_batches(tmp_path):
    model = realistic_model("cbam", seed=4)
    report = export_model(model, tmp_path / "dyn.onnx", (64, 64), dynamic=True)
    assert len(report.checked_sizes) == 2 and report.max_abs_diff <= 1e-4
    x = torch.randn(2, 3, 72, 100) * 60
    with torch.inference_mode():
        ref = model(x)
    for a, b in zip(ref, OnnxRuntimeModel(report.path, threads=1)(x), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_wrong_variant_or_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    weights = tmp_path / "cbam.pth"
    save_checkpoint(weights, realistic_model("cbam"))
    out = tmp_path / "x.onnx"
    assert main(["--network", "none", "--trained-model", str(weights), "--out", str(out), "--size", "64", "64"]) == 2
    assert "holds model 'cbam', but 'none' was requested" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(weights.read_bytes()[:1000])
    assert main(["--network", "cbam", "--trained-model", str(corrupt), "--out", str(out)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert exit_status(main, ["--network", "resnet", "--out", str(out)]) == 2
    assert "argument --network: invalid choice: 'resnet'" in capsys.readouterr().err
    assert not out.exists()


def test_a_wrong_export_is_caught_and_never_written(tmp_path, monkeypatch, capsys):
    """A DeformConv node that drops the modulation mask exports fine and passes onnx.checker, but its
    outputs differ: verification must refuse it, keep the old file and leave no temp file behind."""
    def no_mask(g, x, weight, offset, bias, mask):
        return g.op("DeformConv", x, weight, offset, bias, kernel_shape_i=[3, 3], pads_i=[1, 1, 1, 1])

    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    monkeypatch.setattr(_DeformConvOp, "symbolic", staticmethod(no_mask))
    weights = tmp_path / "none.pth"
    save_checkpoint(weights, realistic_model("none"))
    assert main(["--network", "none", "--trained-model", str(weights), "--out", str(out), "--size", "64", "64"]) == 2
    assert "differ from PyTorch" in capsys.readouterr().err
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "none.pth"]


def test_export_failure_is_one_error_type():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return (x.numpy(),)  # not traceable

    with pytest.raises(OnnxExportError, match="ONNX export failed"):
        export_onnx_bytes(Bad(), (32, 32))


def test_runtime_cache_follows_weight_changes():
    model = realistic_model("none")
    first = runtime_for(model, threads=1)
    assert runtime_for(model, threads=1) is first
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.heads.parameters().__next__().add_(0.5)  # an in-place update, as an optimizer step does
        ref = model(x)
    second = runtime_for(model, threads=1)
    assert second is not first
    torch.testing.assert_close(second(x)[0], ref[0], atol=1e-4, rtol=1e-4)
