"""Defaults that meet: each command's default input is where the command before it writes, `--resume auto`
restores a run's recorded flags (or names the one that conflicts), and the demo builder leaves the shipped
demo alone unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eval.attention.measure as attention_stats
import eval.verdicts.conclusion as conclusion
import eval.verdicts.paired_ap as compare_ap
import eval.widerface.predict as predict
import eval.widerface.protocol as widerface
from core.checkpoint import read_checkpoint, save_checkpoint
from core.data.wider_gt_write import write_wider_gt
from core.factory import build_model
from core.lab.artifacts import COMPARE_DIR, DEFAULT_DATA, DEFAULT_RESULTS, DEFAULT_RUNS
from core.synth.generate import build_parser as synth_parser
from core.synth.generate import generate_dataset
from eval import results
from eval.widerface.submission import META_FILE, write_predictions
from tests.eval.verdicts.test_paired_ap import detector, face_gt
from train import demo
from train.cli import main as train_main
from train.trainer import RESTORED_ON_RESUME

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_default_input_is_where_the_previous_command_writes():
    data = synth_parser().parse_args([]).out
    assert data == DEFAULT_DATA
    from train.cli import build_parser as train_parser

    train_args = train_parser().parse_args(["--network", "cbam"])
    assert train_args.data == data and train_args.out == DEFAULT_RUNS
    res = results.build_parser().parse_args([])
    assert (res.data, res.weights_dir, res.out) == (data, train_args.out, DEFAULT_RESULTS)
    stats = attention_stats.build_parser().parse_args([])
    assert (stats.data, stats.weights_dir, stats.out.parent) == (data, train_args.out, res.out)
    given = Path(__file__)  # paths typed on the command line must exist (core.io.cli_paths); defaults are not read
    assert predict.build_parser().parse_args(["--trained-model", str(given), "--out", "p"]).data == data
    assert widerface.build_parser().parse_args(["--pred", str(given.parent)]).gt == data / "ground_truth"
    assert conclusion.build_parser().parse_args([]).results == res.out


def test_weights_dir_default_finds_checkpoints_as_training_lays_them_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for run, model in (("eca_cbam_s0", "eca_cbam"), ("par_s0", "eca_cbam_parallel")):
        for name in ("last.pth", "Final.pth"):
            save_checkpoint(DEFAULT_RUNS / run / "weights" / name, build_model(model))
    found = results.resolve_weights(results.build_parser().parse_args([]).weights_dir,
                                    ["eca_cbam", "eca_cbam_parallel"])
    assert found == {"eca_cbam": DEFAULT_RUNS / "eca_cbam_s0" / "weights" / "Final.pth",
                     "eca_cbam_parallel": DEFAULT_RUNS / "par_s0" / "weights" / "Final.pth"}


def test_the_conclusion_reads_the_comparison_compare_ap_writes_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    gt = face_gt(8)
    write_wider_gt(DEFAULT_DATA / "ground_truth", gt.images)
    (DEFAULT_DATA / "manifest.json").write_text(json.dumps({"dataset": "synthetic"}))
    for name, p in (("eca_cbam", 0.5), ("eca_cbam_parallel", 0.9)):
        write_predictions(Path("preds") / name, detector(gt, p, seed=1))
        (Path("preds") / name / META_FILE).write_text(json.dumps({"network": name}))
    assert compare_ap.main(["--pred-a", "preds/eca_cbam", "--pred-b", "preds/eca_cbam_parallel",
                            "--resamples", "50"]) == 0
    written = DEFAULT_RESULTS / COMPARE_DIR / "eca_cbam__eca_cbam_parallel__synthetic.json"
    assert written.is_file() and str(written) in capsys.readouterr().out
    reports, warnings = compare_ap.load_reports(DEFAULT_RESULTS)
    assert not warnings and [(r["model_a"], r["model_b"]) for r in reports] == [("eca_cbam", "eca_cbam_parallel")]
    assert conclusion.main([]) == 0  # defaults: results/ in, results/conclusion.md out
    text = (DEFAULT_RESULTS / "conclusion.md").read_text()
    assert "ECA-CBAM parallel" in text and "synthetic" in text.lower()


def test_compare_ap_without_model_names_asks_for_them_or_a_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictions(Path("a"), {"0--ev": {}})
    with pytest.raises(SystemExit):
        compare_ap.main(["--pred-a", "a", "--pred-b", "a"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 1-epoch run with non-default flags (8 images, 128 px): (runs root, data)."""
    data = generate_dataset(tmp_path_factory.mktemp("d") / "synth", num_train=8, num_val=4, seed=0)
    out = tmp_path_factory.mktemp("runs")
    assert train_main(["--network", "eca_cbam", "--data", str(data), "--out", str(out), "--run-name", "r",
                       "--max-epoch", "1", "--batch-size", "4", "--img-size", "128", "--workers", "0",
                       "--warmup-epochs", "1", "--lr-steps", "1", "--eval-every", "0", "--eval-size", "128",
                       "--seed", "3", "--no-progress", "--device", "cpu"]) == 0
    return out, data


def test_resume_auto_restores_the_recorded_flags(tiny_run, capsys):
    out, data = tiny_run
    recorded = json.loads((out / "r" / "run.json").read_text())["args"]
    assert train_main(["--out", str(out), "--run-name", "r", "--resume", "auto", "--max-epoch", "2", "--workers", "0",
                       "--no-progress"]) == 0
    assert "settings restored" in capsys.readouterr().err
    resumed = read_checkpoint(out / "r" / "weights" / "last.pth")
    assert resumed["epoch"] == 2
    for key in RESTORED_ON_RESUME:
        if key != "max_epoch":
            assert resumed["args"][key] == recorded[key], key
    assert resumed["args"]["data"] == str(data) and resumed["args"]["seed"] == 3


def test_resume_auto_refuses_a_conflicting_flag_by_name(tiny_run, capsys):
    out, _ = tiny_run
    before = (out / "r" / "weights" / "last.pth").stat().st_mtime_ns
    assert train_main(["--out", str(out), "--run-name", "r", "--resume", "auto", "--img-size", "160",
                       "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "--img-size 160 (recorded: 128)" in err and "--seed" not in err.split("recorded: 128")[1]
    assert (out / "r" / "weights" / "last.pth").stat().st_mtime_ns == before  # nothing was touched


def test_network_is_required_without_a_run_to_resume(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--out", str(tmp_path), "--run-name", "new", "--resume", "auto"])
    assert "--network is required" in capsys.readouterr().err


def test_demo_builds_elsewhere_unless_asked_to_update_the_shipped_one():
    assert demo.parse_args([]).out == demo.DEFAULT_OUT
    assert demo.parse_args(["--eval-only"]).out == demo.DEFAULT_OUT
    assert demo.parse_args(["--update-shipped"]).out == demo.SHIPPED
    with pytest.raises(SystemExit):
        demo.parse_args(["--out", "assets/demo", "--eval-only"])
    with pytest.raises(SystemExit):
        demo.parse_args(["--update-shipped", "--out", "elsewhere"])


def test_eval_only_elsewhere_starts_from_a_copy_of_the_demo(tmp_path):
    source = tmp_path / "shipped"
    save_checkpoint(source / "weights" / "cbam_s0.pth", build_model("cbam"))
    (source / "runs" / "cbam_s0").mkdir(parents=True)
    (source / "runs" / "cbam_s0" / "run.json").write_text("{}")
    (source / "manifest.json").write_text(json.dumps({"models": ["cbam"]}))
    demo.copy_demo(source, tmp_path / "build")
    assert (tmp_path / "build" / "weights" / "cbam_s0.pth").read_bytes() == \
        (source / "weights" / "cbam_s0.pth").read_bytes()
    assert (tmp_path / "build" / "runs" / "cbam_s0" / "run.json").is_file()
    with pytest.raises(SystemExit, match="needs an existing demo"):
        demo.copy_demo(tmp_path / "nothing", tmp_path / "build2")
