"""Safety: every file a page reads stays inside its folder (symlinks escaping it are refused with the
reason), and a run seen twice is counted once. Each test feeds the bad file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.checkpoint import save_checkpoint
from core.factory import build_model
from core.lab.roots import SourceError, confine, iter_files, resolve_roots
from core.lab.run_index import index_runs, run_identity
from dashboard.logic.inventory import build_inventory
from dashboard.logic.weights import read_manifest, scan_checkpoints
from eval.runs.convergence import load_convergence
from eval.runs.event_cache import EventCache
from eval.verdicts.conclusion import runs_overview
from eval.verdicts.results_files import load_comparison, load_eval_records, load_latency, load_reference
from tests.eval.runs.test_convergence import event_file, write_run
from tests.eval.verdicts.test_tables import make_results_root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the allowed ones, holding files that look right."""
    folder = tmp_path / "elsewhere"
    make_results_root(folder)
    return folder


def test_confine_names_the_reason(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    (root / "link.csv").symlink_to(outside / "comparison_table.csv")
    (root / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    (root / "sub").mkdir()
    assert confine(outside / "comparison_table.csv", outside) == (outside / "comparison_table.csv").resolve()
    with pytest.raises(SourceError, match=r"link.csv: skipped, a symlink to .*elsewhere.*, outside"):
        confine(root / "link.csv", root)
    with pytest.raises(SourceError, match="dangling symlink"):
        confine(root / "dangling.csv", root)
    with pytest.raises(SourceError, match="not a regular file"):
        confine(root / "sub", root)


def test_results_files_symlinked_from_elsewhere_are_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "results"
    (root / "eval").mkdir(parents=True)
    for name in ("comparison_table.csv", "latency_benchmark.csv", "reference_results.csv"):
        (root / name).symlink_to(outside / name)
    (root / "eval" / "passwd.json").symlink_to(next((outside / "eval").glob("*.json")))
    comp, lat, ref = load_comparison(root), load_latency(root), load_reference(root)
    assert comp.frame.empty and "symlink to" in comp.errors[0] and "outside" in comp.errors[0]
    assert lat.frame.empty and "symlink to" in lat.errors[0]
    assert "built-in" in ref.errors[0] and len(ref.frame) >= 3  # falls back to the registry's rows
    records, warnings = load_eval_records(root)
    assert records == [] and len(warnings) == 1 and "passwd.json: skipped, a symlink to" in warnings[0]
    inv = build_inventory(resolve_roots(["--results-dir", str(root), "--runs-dir", str(tmp_path / "runs")], {},
                                        tmp_path))
    assert {r["file"] for r in inv.results if r["error"] and "symlink" in r["error"]} == {
        "comparison_table.csv", "latency_benchmark.csv", "reference_results.csv"}
    assert inv.eval_files == 0 and len(inv.skipped_files) == 4


def test_results_eval_folder_symlinked_elsewhere_is_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    (root / "eval").symlink_to(outside / "eval", target_is_directory=True)
    records, warnings = load_eval_records(root)
    assert records == [] and "eval: skipped, a symlink to" in warnings[0]


def test_event_file_symlinked_from_elsewhere_is_not_plotted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    foreign = write_run(tmp_path / "other", "foreign", "cbam", 0, 5)
    run = runs / "mine"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"model": "cbam", "dataset": "synthetic", "seed": 3}')
    (run / "events.out.tfevents.1.host.1.0").symlink_to(event_file(foreign))
    data = load_convergence([runs], EventCache())
    row = data.runs.set_index("run").loc["runs/mine"]
    assert (row["event_files"], row["points"], row["status"]) == (0, 0, "no event file")
    assert any("events.out.tfevents.1.host.1.0: skipped, a symlink to" in w for w in data.warnings)


def test_run_json_symlinked_from_elsewhere_is_skipped(tmp_path: Path) -> None:
    foreign = write_run(tmp_path / "other", "foreign", "cbam", 0, 3)
    (tmp_path / "runs" / "ghost").mkdir(parents=True)
    (tmp_path / "runs" / "ghost" / "run.json").symlink_to(foreign / "run.json")
    index = index_runs([tmp_path / "runs"])
    assert index.runs == [] and "run.json: skipped, a symlink to" in index.skipped[0]


def test_weights_picker_lists_escaping_symlinks_with_a_reason(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "private" / "cbam.pth", build_model("cbam"))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "borrowed.pth").symlink_to(tmp_path / "private" / "cbam.pth")
    skipped: list[str] = []
    assert iter_files(weights, ".pth", skipped) == [] and "borrowed.pth: skipped, a symlink to" in skipped[0]
    roots = resolve_roots([], {}, tmp_path)
    scan = scan_checkpoints(roots)
    assert scan.found == [] and any("borrowed.pth: skipped, a symlink to" in s for s in scan.skipped)


def test_a_copied_run_is_counted_once(tmp_path: Path) -> None:
    """A runs folder holding a copy of the demo runs: each run once in every table, and a note says so."""
    demo = tmp_path / "demo_runs"
    for seed in (0, 1):
        write_run(demo, f"cbam_s{seed}", "cbam", seed, 4)
    shutil.copytree(demo, tmp_path / "runs")
    write_run(tmp_path / "runs", "cbam_s2", "cbam", 2, 4)
    roots = [tmp_path / "runs", demo]
    index = index_runs(roots)
    assert len(index.runs) == 3 and len(index.duplicates) == 2
    assert all("counted once" in d and "sha256:" in d for d in index.duplicates)
    data = load_convergence(roots, EventCache())
    assert sorted(data.runs["seed"]) == [0, 1, 2]
    assert sum("counted once" in w for w in data.warnings) == 2
    assert len(runs_overview(roots)) == 3


def test_run_identity_prefers_the_run_json_id(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", "r", "cbam", 0, 1)
    (a / "run.json").write_text('{"model": "cbam", "dataset": "synthetic", "seed": 0, "id": "abc"}')
    b = write_run(tmp_path / "b", "r", "cbam", 0, 1)
    (b / "run.json").write_text('{"model": "cbam", "dataset": "synthetic", "seed": 0, "id": "abc", "note": "x"}')
    index = index_runs([tmp_path / "a", tmp_path / "b"])
    assert [run_identity(i) for _, i in index.runs] == ["id:abc"] and len(index.duplicates) == 1


def test_demo_manifest_symlinked_from_elsewhere_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text('{"dataset": "widerface"}')
    demo = tmp_path / "assets" / "demo"
    demo.mkdir(parents=True)
    (demo / "manifest.json").symlink_to(tmp_path / "secret.json")
    assert read_manifest(resolve_roots([], {}, tmp_path)) is None
    (demo / "manifest.json").unlink()
    (demo / "manifest.json").write_text('{"dataset": "synthetic"}')
    assert read_manifest(resolve_roots([], {}, tmp_path)) == {"dataset": "synthetic"}
