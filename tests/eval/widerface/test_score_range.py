"""eval.widerface.protocol on a prediction score outside [0, 1]: --strict stops at file:line, --lenient warns and
explains why the AP it prints is not the model's (global min-max normalisation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.data.wider_gt import ATTRIBUTES, SETTINGS, GTImage, WiderGT
from core.data.wider_gt_write import write_wider_gt
from eval.widerface.protocol import evaluate, main
from eval.widerface.submission import write_predictions


def world(tmp_path: Path) -> tuple[WiderGT, dict]:
    """40 images, one face each; each gets its face (score 0.3-1.0) and a miss (score 0-0.7)."""
    rng = np.random.default_rng(0)
    images, pred = [], {}
    for i in range(40):
        box = np.array([[20.0 + i, 30.0, 60.0, 70.0]])
        keep = {s: np.array([0]) for s in SETTINGS}
        images.append(GTImage("0--ev", f"img_{i}", box, {a: np.zeros(1, int) for a in ATTRIBUTES}, keep))
        hit = [*box[0], rng.uniform(0.3, 1.0)]
        miss = [300.0, 300.0, 40.0, 40.0, rng.uniform(0.0, 0.7)]
        pred.setdefault("0--ev", {})[f"img_{i}"] = np.array([hit, miss])
    gt = WiderGT(tuple(images))
    write_wider_gt(tmp_path / "gt", gt.images)
    return gt, pred


def test_strict_stops_at_the_line_lenient_warns_and_explains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, pred = world(tmp_path)
    clean_ap = evaluate(pred, gt).ap["hard"]
    pred["0--ev"]["img_7"][1, 4] = 1e6  # a false positive with a raw score (the writer puts it on line 3)
    write_predictions(tmp_path / "pred", pred)
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]

    assert main(args) == 2
    err = capsys.readouterr().err
    assert "img_7.txt:3: score 1e+06 outside [0, 1]" in err

    out_json = tmp_path / "res.json"
    assert main([*args, "--lenient", "--json", str(out_json)]) == 0
    err = capsys.readouterr().err
    assert "img_7.txt:3: score 1e+06 outside [0, 1]; kept" in err and "min-max" in err
    assert "1 score(s) above 1 kept" in err and "not the model's" in err
    lenient_ap = json.loads(out_json.read_text())["ap"]["hard"]
    assert clean_ap > 0.8 and lenient_ap < clean_ap - 0.3, (clean_ap, lenient_ap)  # the effect, measured
