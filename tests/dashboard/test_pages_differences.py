"""AppTest drives the Results page's AP-difference and "where the models differ" sections and the Heatmaps
page's quality report, on a tiny synthetic set with real checkpoints, predictions and reports."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.lab.roots
from core.checkpoint import save_checkpoint
from core.data.wider_gt import load_wider_gt
from core.lab.artifacts import atomic_write_json
from core.synth.generate import generate_dataset
from dashboard.logic.missed_faces import predict_val
from eval.attention.measure import DEFAULT_OUT, attention_stats
from eval.deploy.bn_fold import prepare_for_inference
from eval.verdicts.paired_ap import compare_results
from eval.widerface.protocol import evaluate
from eval.widerface.submission import write_predictions
from tests.conftest import realistic_model

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
MODELS = ("cbam", "eca_cbam_parallel")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """results/ with eval JSONs, prediction folders, the val set (inside results/), compare_ap and attention
    stats reports; weights/ beside it."""
    root = tmp_path_factory.mktemp("diff")
    results = root / "results"
    data = generate_dataset(results / "data", num_train=0, num_val=3, seed=5, min_size=64, max_size=112)
    gt = load_wider_gt(data / "ground_truth")
    models = {}
    for i, name in enumerate(MODELS):
        model = realistic_model(name, seed=i)
        save_checkpoint(root / "weights" / f"{name}.pth", model)
        models[name] = model
        pred = predict_val(prepare_for_inference(model.eval()), data)
        write_predictions(results / "predictions" / name, pred)
        atomic_write_json(results / "eval" / f"{name}__synthetic__t{i}.json", {
            "model": name, "dataset": "synthetic", "dataset_path": str(data), "weights": str(root / "weights" /
                                                                                              f"{name}.pth"),
            "predict": {"predictions": str(results / "predictions" / name)},
            "evaluation": evaluate(pred, gt).to_dict()})
    compare_results(results, resamples=50, progress=False)
    atomic_write_json(results / DEFAULT_OUT, attention_stats(models, data, resamples=20, progress=False))
    return root


@pytest.fixture
def roots(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    results = tmp_path / "results"
    shutil.copytree(built / "results", results)
    for path in (results / "eval").glob("*.json"):  # point the copies at the copied folders
        path.write_text(path.read_text().replace(str(built / "results"), str(results)))
    monkeypatch.setenv("FEATHERFACE_RESULTS_DIR", str(results))
    real = core.lab.roots.resolve_roots

    def only_these(argv, env, *args):
        r = real(argv, env, *args)
        return dataclasses.replace(r, runs=(), weights=(built / "weights",), demo=tmp_path / "no_demo")

    monkeypatch.setattr("dashboard.common.resolve_roots", only_these)
    return results


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.switch_page(f"views/{name}.py").run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_results_page_ap_differences_and_side_by_side(roots: Path):
    at = run_page("results")
    assert not at.error
    subheaders = texts(at.subheader)
    assert "AP differences with 95% CIs" in subheaders and "Where the models differ" in subheaders
    diff = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert len(diff) == 4 and set(diff["subset"]) == {"easy", "medium", "hard", "mAP"}
    assert not at.exception
    table = next(d.value for d in at.dataframe if "only_a" in d.value.columns)
    assert len(table) == 3
    images = at.get("image")
    assert len(images) == 2  # the chosen image, model A and model B, masks from the checkpoints
    at.selectbox(key="res_diff_level").set_value("none").run()
    assert not at.exception and len(at.get("image")) == 2
    at.toggle(key="res_cmp_breakdown").set_value(True).run()
    assert len(next(d.value for d in at.dataframe if "verdict" in d.value.columns)) > 4


def test_results_page_runs_the_models_when_predictions_are_absent(roots: Path):
    shutil.rmtree(roots / "predictions")
    at = run_page("results")
    assert "Prediction folders are absent" in texts(at.info)
    at.button(key="res_diff_run").click().run()
    assert not at.exception
    assert any("only_a" in d.value.columns for d in at.dataframe) and len(at.get("image")) == 2


def test_results_page_says_plainly_when_images_are_absent(roots: Path):
    shutil.rmtree(roots / "data")
    at = run_page("results")
    assert "Not available: this view needs the val images" in texts(at.info)
    assert not at.get("image")
    shutil.rmtree(roots / "compare_ap")
    at = run_page("results")
    assert "No AP comparisons" in texts(at.info)


def test_heatmaps_page_quality_report(roots: Path):
    at = run_page("heatmaps")
    assert "Heatmap quality over the val images" in texts(at.subheader)
    quality = [d.value for d in at.dataframe if "model" in d.value.columns and len(d.value.columns) > 4]
    assert len(quality) == 6 and len(quality[0]) == len(MODELS)  # one table per level, a row per model
    at.radio(key="hm_stats_mask").set_value("hybrid").run()
    assert not at.exception and not at.error
    (roots / DEFAULT_OUT).write_text(json.dumps({"rows": "no"}))
    at = run_page("heatmaps")
    assert "not an attention-stats report" in texts(at.error)
    (roots / DEFAULT_OUT).unlink()
    at = run_page("heatmaps")
    assert "No heatmap-quality report" in texts(at.info)
