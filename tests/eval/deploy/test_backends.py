"""The ONNX Runtime backend predicts what PyTorch predicts: same detections, same WIDER AP (synthetic val)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.data.wider_gt import load_wider_gt
from core.synth.generate import generate_dataset
from eval.deploy.backends import forward_for
from eval.latency.timing import for_backend, run_latency
from eval.widerface.predict import main as predict_main
from eval.widerface.predict import predict_split
from eval.widerface.protocol import evaluate
from eval.widerface.submission import read_predictions
from tests.conftest import realistic_model

DEMO_WEIGHTS = Path(__file__).resolve().parents[3] / "assets" / "demo" / "weights" / "eca_cbam_parallel_s0.pth"


@pytest.fixture(scope="module")
def synth_val(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("backends") / "data", num_train=0, num_val=6, seed=5,
                            min_size=192, max_size=320)


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    """The shipped demo weights (trained on synthetic faces), so AP is far from zero."""
    model, _ = load_checkpoint(DEMO_WEIGHTS, expected_name="eca_cbam_parallel")
    return model.eval()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_same_wider_ap_through_either_backend(synth_val, trained, backend):
    gt = load_wider_gt(synth_val / "ground_truth")
    preds = {b: predict_split(trained, synth_val, backend=b) for b in ("torch", backend)}
    ap = {b: evaluate(p, gt).ap for b, p in preds.items()}
    assert ap["torch"]["hard"] > 0.05, ap  # a (barely) trained detector on this set (0.10), not 0 == 0
    for setting in ("easy", "medium", "hard"):
        assert abs(ap["torch"][setting] - ap[backend][setting]) <= 1e-4, (setting, ap)
    for event, images in preds["torch"].items():
        for name, rows in images.items():
            other = preds[backend][event][name]
            assert rows.shape == other.shape
            np.testing.assert_allclose(other[:, 4], rows[:, 4], atol=1e-5)  # both sorted by score
            # near-equal scores may swap places, so match rows as sets: every box has its twin
            twin = np.abs(rows[:, None, :] - other[None, :, :]).max(axis=2).min(axis=1)
            assert twin.max(initial=0.0) <= 1e-3


def test_detect_with_a_runtime_forward(trained, rgb_image):
    """The detector's own pre/post-processing around an ONNX Runtime forward gives the PyTorch detections."""
    ref = trained.detect(rgb_image, conf_thresh=0.05)
    got = trained.detect(rgb_image, conf_thresh=0.05, forward=forward_for(trained, "onnxruntime"))
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
    assert forward_for(trained, "torch") is None
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        forward_for(trained, "tensorrt")
    with pytest.raises(ValueError, match="masks come from the PyTorch forward pass"):
        trained.inspect(rgb_image, with_masks=True, forward=forward_for(trained, "onnxruntime"))


def test_core_imports_no_runtime():
    """Importing the detector and running it loads neither ONNX Runtime nor OpenVINO (a fresh interpreter)."""
    code = ("import sys, numpy as np; from core.factory import build_model; "
            "build_model('eca_cbam').eval().inspect(np.zeros((32, 32, 3), np.uint8)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'openvino', 'onnx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3]).stdout
    assert out.strip() == "[]"


def test_predict_cli_backend_records_it_and_matches_torch(synth_val, tmp_path, capsys):
    common = ["--network", "eca_cbam_parallel", "--trained-model", str(DEMO_WEIGHTS), "--data", str(synth_val),
              "--device", "cpu", "--threads", "1"]
    assert predict_main([*common, "--out", str(tmp_path / "t")]) == 0
    assert predict_main([*common, "--out", str(tmp_path / "o"), "--backend", "onnxruntime"]) == 0
    assert "(onnxruntime, 1 threads)" in capsys.readouterr().out
    gt = load_wider_gt(synth_val / "ground_truth")
    aps = [evaluate(read_predictions(tmp_path / d, gt, strict=True).predictions, gt).ap for d in ("t", "o")]
    for setting in ("easy", "medium", "hard"):
        assert abs(aps[0][setting] - aps[1][setting]) <= 1e-4
    # resuming the ONNX Runtime folder with the torch backend would mix producers: refused
    assert predict_main([*common, "--out", str(tmp_path / "o")]) == 2
    assert "different ['backend']" in capsys.readouterr().err


def test_latency_backend_rows_record_backend_and_threads(tmp_path):
    rows = run_latency(["none", "retinaface_mnet"], (64, 64), rounds=3, warmup=1, device="cpu", threads=1,
                       backend="onnxruntime", out_csv=tmp_path / "lat.csv")
    assert [r["backend"] for r in rows] == ["onnxruntime", "onnxruntime"]
    assert all(r["threads"] == 1 and r["median_ms"] > 0 for r in rows)
    with pytest.raises(ValueError, match="unknown backend"):
        run_latency(["none"], (64, 64), rounds=1, warmup=0, device="cpu", backend="tvm")


def test_for_backend_keeps_torch_models_and_exports_the_rest():
    model = realistic_model("none")
    assert for_backend({"none": model}, "torch")["none"] is model
    x = torch.randn(2, 3, 64, 96) * 60
    session = for_backend({"none": model}, "onnxruntime", threads=1, input_hw=(64, 96), batch=2)["none"]
    assert session.threads == 1
    with torch.inference_mode():
        ref = model(x)
    for a, b in zip(ref, session(x), strict=True):  # batch 2: a dynamic export
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_for_backend_openvino_fixed_size_uses_the_gather_form():
    """Batch 1 at a fixed size: OpenVINO runs the deformable convs as MatMul + EmbeddingBag (faster than its
    DeformableConvolution in deploy_latency.txt), with the same outputs as the PyTorch model."""
    model = realistic_model("eca_cbam_parallel", seed=4)
    compiled = for_backend({"m": model}, "openvino", threads=1, input_hw=(64, 80))["m"]
    assert compiled.dcn == "gather"
    x = torch.randn(1, 3, 64, 80) * 60
    with torch.inference_mode():
        ref = model(x)
    for a, b in zip(ref, compiled(x), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    from eval.deploy.openvino_runtime import OpenVinoModel

    with pytest.raises(ValueError, match="static shapes"):
        OpenVinoModel(model, 1, dcn="gather")


def test_for_backend_openvino_dynamic_shapes():
    model = realistic_model("eca_cbam", seed=3)
    compiled = for_backend({"eca_cbam": model}, "openvino", threads=1, input_hw=(64, 64), batch=2)["eca_cbam"]
    assert compiled.threads == 1
    x = torch.randn(2, 3, 72, 100) * 60
    with torch.inference_mode():
        ref = model(x)
    for a, b in zip(ref, compiled(x), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_onnx_runtime_workers_do_not_spin_unless_asked():
    """Interleaved timing runs several sessions in one process: a session's busy-waiting workers would take
    the cores of the next (eval.deploy.onnx_runtime.OnnxRuntimeModel); the session option says which."""
    from eval.deploy.onnx_export import export_onnx_bytes
    from eval.deploy.onnx_runtime import OnnxRuntimeModel

    data = export_onnx_bytes(realistic_model("retinaface_mnet"), (64, 64))
    entry = "session.intra_op.allow_spinning"
    quiet, spinning = OnnxRuntimeModel(data, threads=1), OnnxRuntimeModel(data, threads=1, spinning=True)
    assert quiet.session.get_session_options().get_session_config_entry(entry) == "0"
    assert spinning.session.get_session_options().get_session_config_entry(entry) == "1"
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(quiet(x), spinning(x), strict=True):
        assert torch.equal(a, b)
