"""Checkpoint round trip and the ways loading can go wrong."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from core.factory import build_model
from tests.conftest import ROOT, randomize_batchnorm


def test_round_trip_restores_identical_outputs(tmp_path):
    model = randomize_batchnorm(build_model("eca_cbam_parallel")).eval()
    path = tmp_path / "weights" / "Final.pth"
    save_checkpoint(path, model, epoch=7)
    loaded, meta = load_checkpoint(path, expected_name="eca_cbam_parallel")
    assert meta["epoch"] == 7 and meta["model_name"] == "eca_cbam_parallel"
    assert loaded.cfg == model.cfg
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model(x), loaded.eval()(x), strict=True):
            assert torch.equal(a, b)
    assert not list(tmp_path.glob("weights/.*tmp"))  # no temp file left behind


def test_other_variant_is_refused(tmp_path):
    path = tmp_path / "cbam.pth"
    save_checkpoint(path, build_model("cbam"))
    with pytest.raises(CheckpointError, match="holds model 'cbam', but 'eca_cbam' was requested"):
        load_checkpoint(path, expected_name="eca_cbam")


def test_truncated_empty_missing_and_foreign_files(tmp_path):
    path = tmp_path / "ok.pth"
    save_checkpoint(path, build_model("none"))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a FeatherFace checkpoint"):
        read_checkpoint(foreign)


def test_mismatched_state_dict_is_named(tmp_path):
    path = tmp_path / "bad.pth"
    save_checkpoint(path, build_model("cbam"))
    data = torch.load(path, weights_only=True)
    data["state_dict"].pop("heads.cls.convs.0.weight")
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this calls ``exec``: a file appears at ``marker`` if the payload ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


def test_pickle_payload_is_refused_by_every_loader_and_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint with a ``__reduce__`` payload looks like ours but asks to run code. Every way a
    user hands us a checkpoint must refuse it with a message that says so, and never run it."""
    import eval.attention.figures as figures
    import eval.widerface.predict as predict
    from core.lab.roots import Roots
    from core.synth.generate import generate_dataset
    from dashboard.logic.weights import scan_checkpoints
    from eval.runs.weights import resolve_weights
    from train.cli import main as train_main

    marker = tmp_path / "payload_ran.txt"
    weights = tmp_path / "weights"
    weights.mkdir()
    evil = weights / "none.pth"
    model = build_model("none")
    save_checkpoint(evil, model)
    honest = torch.load(evil, weights_only=True)
    torch.save({**honest, "epoch": _Payload(marker)}, evil)
    refused = rf"checkpoint {re.escape(str(evil))} refused: .*\(exec\).*nothing in it ran"

    with pytest.raises(CheckpointError, match=refused):
        read_checkpoint(evil)
    with pytest.raises(CheckpointError, match=refused):
        load_checkpoint(evil, expected_name="none")
    with pytest.raises(CheckpointError, match=refused):
        resolve_weights(weights, ["none"])  # eval.results
    scan = scan_checkpoints(Roots(results=tmp_path, runs=(), weights=(weights,), demo=tmp_path))  # dashboard
    assert scan.found == [] and len(scan.skipped) == 1 and re.search(refused, scan.skipped[0])

    data = generate_dataset(tmp_path / "synth", num_train=4, num_val=1, seed=0)
    clis = {
        "eval.predict": lambda: predict.main(["--network", "none", "--trained-model", str(evil), "--data", str(data),
                                              "--out", str(tmp_path / "preds"), "--device", "cpu"]),
        "eval.attention.figures": lambda: figures.main(["--network", "none", "--trained-model", str(evil),
                                              "--out", str(tmp_path / "fig.png")]),
        "train --resume": lambda: train_main(["--network", "none", "--data", str(data), "--out", str(tmp_path / "runs"),
                                              "--run-name", "r", "--batch-size", "2", "--img-size", "64",
                                              "--workers", "0", "--device", "cpu", "--no-progress",
                                              "--resume", str(evil)]),
    }  # fmt: skip
    for name, run in clis.items():
        assert run() == 2, name
        assert re.search(refused, capsys.readouterr().err), name
    assert not marker.exists(), "the pickle payload ran"


def test_every_loader_in_the_code_is_weights_only() -> None:
    """Covers loaders added later: each ``torch.load`` passes ``weights_only=True``; raw pickle is banned."""
    offenders = []
    folders = ("core", "eval", "train", "dashboard", "benchmarks")
    for path in sorted(p for d in folders for p in (ROOT / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            call = f"{owner}.{node.func.attr}"
            keywords = {k.arg: k.value for k in node.keywords}
            safe = isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
            if (call == "torch.load" and not safe) or call in ("pickle.load", "pickle.loads", "dill.load"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {call}")
            if call == "np.load" and "allow_pickle" in keywords:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} np.load(allow_pickle=...)")
    assert offenders == []
