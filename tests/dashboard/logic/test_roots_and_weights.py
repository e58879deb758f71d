"""core.lab.roots (root resolution argv > env > defaults, path containment) and dashboard.logic.weights (weights
discovery, model loading)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.checkpoint import CheckpointError, save_checkpoint
from core.factory import build_model
from core.lab.roots import RESULTS_ENV, RUNS_ENV, SourceError, ensure_within, is_within, iter_files, resolve_roots
from dashboard.logic.weights import WeightsOption, discover_weights, load_inference_model, scan_checkpoints


def test_defaults_without_local_results(tmp_path: Path) -> None:
    roots = resolve_roots([], {}, tmp_path)
    demo = tmp_path.resolve() / "assets" / "demo"
    reference = tmp_path.resolve() / "assets" / "reference"
    assert roots.results == demo / "results"
    assert roots.runs == (tmp_path.resolve() / "runs", demo / "runs", reference / "runs")
    assert roots.weights == (tmp_path.resolve() / "weights", tmp_path.resolve() / "runs", demo, reference)
    assert roots.demo == demo and roots.reference == reference


@pytest.mark.parametrize("marker", ["comparison_table.csv", "latency_benchmark.csv"])
def test_default_results_prefers_local_results_with_csv(tmp_path: Path, marker: str) -> None:
    (tmp_path / "results").mkdir()
    assert resolve_roots([], {}, tmp_path).results == tmp_path.resolve() / "assets/demo/results"
    (tmp_path / "results" / marker).write_text("model\n")
    assert resolve_roots([], {}, tmp_path).results == tmp_path.resolve() / "results"


def test_env_then_argv_override(tmp_path: Path) -> None:
    env = {RESULTS_ENV: str(tmp_path / "env_res"), RUNS_ENV: "env_runs"}
    roots = resolve_roots(["-q", "tests"], env, tmp_path)
    assert roots.results == (tmp_path / "env_res").resolve()
    assert roots.runs[0] == (tmp_path / "env_runs").resolve()  # relative -> from the repo root
    assert roots.runs[1] == tmp_path.resolve() / "assets/demo/runs"
    assert (tmp_path / "env_runs").resolve() in roots.weights
    argv = ["--results-dir", "cli_res", "--runs-dir=/abs/runs", "--server.port", "1"]
    roots = resolve_roots(argv, env, tmp_path)
    assert roots.results == (tmp_path / "cli_res").resolve()
    assert roots.runs[0] == Path("/abs/runs")


def test_containment_rejects_traversal_and_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    inside = root / "sub" / "ok.pth"
    inside.write_bytes(b"x")
    secret = tmp_path / "secret.pth"
    secret.write_bytes(b"s")
    (root / "escape.pth").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    assert ensure_within(inside, [root]) == inside.resolve()
    assert is_within(root / "sub" / ".." / "sub" / "ok.pth", [root])
    for bad in (root / ".." / "secret.pth", root / "escape.pth", root / "linkdir" / "secret.pth",
                Path("/etc/passwd"), root / "missing.pth"):
        with pytest.raises(SourceError):
            ensure_within(bad, [root])
    with pytest.raises(SourceError, match="not a regular file"):
        ensure_within(root / "sub", [root])
    found = iter_files(root, ".pth")
    assert found == [root / "sub" / "ok.pth"]  # escaping link and linked dir not followed


@pytest.fixture(scope="module")
def fake_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    demo = repo / "assets" / "demo"
    save_checkpoint(demo / "weights" / "cbam.pth", build_model("cbam"), epoch=29, dataset="synthetic")
    save_checkpoint(repo / "runs" / "r1" / "weights" / "best.pth", build_model("eca_cbam"), epoch=4,
                    dataset="synthetic")
    save_checkpoint(repo / "weights" / "cbam.pth", build_model("eca_cbam_parallel"))  # misleading name
    (repo / "weights" / "corrupt.pth").write_bytes(b"\x80\x02not a zip")
    (repo / "weights" / "empty.pth").write_bytes(b"")
    (repo / "weights" / ".hidden.pth").write_bytes(b"")
    (demo / "manifest.json").write_text(json.dumps({"dataset": "synthetic", "epochs": 30}))
    return repo


def test_discover_weights(fake_repo: Path) -> None:
    roots = resolve_roots([], {}, fake_repo)
    scan = scan_checkpoints(roots)
    assert len(scan.found) == 3 and len(scan.skipped) == 2
    assert any("empty" in s for s in scan.skipped) and any("corrupt" in s for s in scan.skipped)

    cbam = discover_weights("cbam", roots, scan=scan)
    assert [o.kind for o in cbam] == ["demo", "random"]
    assert cbam[0].label == "demo (synthetic, 30 epochs)"
    assert cbam[-1].label == "random init — untrained" and cbam[-1].path is None

    seq = discover_weights("eca_cbam", roots, scan=scan)
    assert [o.kind for o in seq] == ["checkpoint", "random"]
    assert seq[0].label == "runs/r1/weights/best.pth (synthetic, 4 epochs)"

    par = discover_weights("eca_cbam_parallel", roots)  # matched by embedded name, not by file name
    assert par[0].path == fake_repo / "weights" / "cbam.pth" and par[0].label == "weights/cbam.pth"
    assert len({o.key for o in cbam + seq + par}) == len(cbam + seq + par)
    with pytest.raises(KeyError):
        discover_weights("resnet", roots, scan=scan)


def test_demo_weights_one_per_seed_in_seed_order(tmp_path: Path) -> None:
    demo = tmp_path / "assets" / "demo"
    for seed in (2, 0, 1):
        save_checkpoint(demo / "weights" / f"cbam_s{seed}.pth", build_model("cbam"), epoch=8, dataset="synthetic")
    save_checkpoint(demo / "weights" / "none_s0.pth", build_model("cbam"))  # name says none, holds cbam
    (demo / "manifest.json").write_text(json.dumps({"dataset": "synthetic", "epochs": 8}))
    opts = discover_weights("cbam", resolve_roots([], {}, tmp_path))
    assert [o.label for o in opts] == [f"demo (synthetic, 8 epochs, seed {s})" for s in (0, 1, 2)] + [
        "assets/demo/weights/none_s0.pth", "random init — untrained"]
    assert [o.kind for o in opts] == ["demo", "demo", "demo", "checkpoint", "random"]


def test_demo_label_without_manifest(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "assets/demo/weights/none.pth", build_model("none"))
    opts = discover_weights("none", resolve_roots([], {}, tmp_path))
    assert opts[0].kind == "demo" and opts[0].label == "demo (synthetic)"


def test_load_inference_model(fake_repo: Path) -> None:
    roots = resolve_roots([], {}, fake_repo)
    good = discover_weights("eca_cbam", roots)[0]
    model = load_inference_model(good, roots)
    assert not model.training and model.name == "eca_cbam"
    assert load_inference_model(good, roots, fold_bn=False).get_parameter_count()["total"] == 476_345
    assert model.get_parameter_count()["total"] < 476_345  # folded BN is gone
    a = load_inference_model(WeightsOption("cbam", "random", "r"), roots)
    b = load_inference_model(WeightsOption("cbam", "random", "r"), roots)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters(), strict=True))  # seeded
    wrong = WeightsOption("cbam", "checkpoint", "x", path=fake_repo / "weights" / "cbam.pth")
    with pytest.raises(CheckpointError, match="eca_cbam_parallel"):
        load_inference_model(wrong, roots)
    outside = WeightsOption("cbam", "checkpoint", "x", path=fake_repo / "elsewhere.pth")
    outside.path.write_bytes(b"x")
    with pytest.raises(SourceError):
        load_inference_model(outside, roots)
    os.remove(outside.path)
