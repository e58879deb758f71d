"""eval.runs.convergence on real event files written by torch's SummaryWriter (several models and seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch.utils.tensorboard import SummaryWriter

from core.lab.artifacts import TB_TAGS
from eval.runs.convergence import (
    ConvergenceData,
    available_metrics,
    default_curves,
    load_convergence,
    mean_of_seeds_default,
    select_runs,
)
from eval.runs.curves import (
    curve_figure,
    ema_smooth,
    first_crossing,
    minmax_indices,
    seed_band,
    series,
    stability_by_model,
    stability_figure,
    stability_table,
    tail_stats,
)
from eval.runs.event_cache import EventCache
from eval.runs.tfevents.framing import scan_records

LOSS = TB_TAGS["train_loss"]
AP = TB_TAGS["ap_hard"]


def loss_at(epoch: int, seed: int) -> float:
    return 4.0 / (epoch + 1) + 0.1 * seed


def write_run(root: Path, name: str, model: str, seed: int, epochs: int, dataset: str = "synthetic") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": model, "dataset": dataset, "seed": seed}))
    with SummaryWriter(str(run)) as w:
        for e in range(epochs):
            w.add_scalar(LOSS, loss_at(e, seed), e)
            w.add_scalar(TB_TAGS["lr"], 0.01, e)
            w.add_scalar(AP, 10.0 * e + seed, e)
    return run


def event_file(run: Path) -> Path:
    (path,) = run.glob("events.out.tfevents.*")
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed in (0, 1, 2):
        write_run(root, f"cbam_s{seed}", "cbam", seed, 8)
    write_run(root, "par_s0", "eca_cbam_parallel", 0, 6)
    write_run(root, "par_wider", "eca_cbam_parallel", 0, 4, dataset="widerface")
    return root


def test_loads_every_run_with_its_dataset(runs: Path):
    data = load_convergence([runs, runs.parent / "missing"], EventCache())
    assert data.warnings == ()
    # one naming rule for every run: <root folder>/<run folder>; the WIDER FACE run is listed first
    assert data.runs["run"].tolist() == ["runs/par_wider", "runs/cbam_s0", "runs/cbam_s1", "runs/cbam_s2",
                                         "runs/par_s0"]
    row = data.runs.set_index("run").loc["runs/par_wider"]
    assert (row["dataset"], row["last_epoch"], row["status"]) == ("widerface", 3, "ok")
    s1 = series(data, LOSS).query("run == 'runs/cbam_s1'")
    assert np.allclose(s1["value"], [loss_at(e, 1) for e in range(8)], atol=1e-6)
    assert {LOSS, AP, TB_TAGS["lr"]} <= set(data.tags)


def test_ema_matches_tensorboard():
    y = np.array([1.0, 2.0, np.nan, 3.0])
    w = 0.6
    # TensorBoard: last = last*w + (1-w)*v; smoothed = last / (1 - w**count); non-finite passed through
    l1 = 0.4 * 1.0
    l2 = l1 * w + 0.4 * 2.0
    l3 = l2 * w + 0.4 * 3.0
    out = ema_smooth(y, w)
    assert np.allclose(out[[0, 1, 3]], [l1 / 0.4, l2 / (1 - w**2), l3 / (1 - w**3)])
    assert np.isnan(out[2])
    assert np.array_equal(ema_smooth([5.0, 5.0, 5.0], 0.9), [5.0, 5.0, 5.0])
    assert np.array_equal(ema_smooth(y[:2], 0.0), y[:2])
    with pytest.raises(ValueError):
        ema_smooth(y, 1.0)


def test_seed_band_never_pools_datasets(runs: Path):
    data = load_convergence([runs], EventCache())
    agg = seed_band(series(data, LOSS))
    cbam = agg.query("model == 'cbam'").set_index("step")
    assert (cbam["n"] == 3).all()
    assert np.allclose(cbam["mean"], [loss_at(e, 1) for e in range(8)], atol=1e-6)
    assert np.allclose(cbam["max"] - cbam["min"], 0.2, atol=1e-6)
    assert np.allclose(cbam["std"], 0.1, atol=1e-6)
    par = agg.query("model == 'eca_cbam_parallel'")
    assert set(par["dataset"]) == {"synthetic", "widerface"} and (par["n"] == 1).all() and (par["std"] == 0).all()
    fig = curve_figure(data, LOSS, smoothing=0.5, log_y=True, aggregate=True, band="std")
    assert fig.layout.yaxis.type == "log"
    # (cbam, synthetic) has 3 runs: upper, lower, mean; (par, synthetic) and (par, widerface) one run each:
    # the mean alone (a single run has no spread to draw)
    assert len(fig.data) == 3 + 1 + 1
    assert sum(t.fill == "tonexty" for t in fig.data) == 1
    assert len(curve_figure(data, LOSS, smoothing=0.5).data) == 2 * 5  # raw (faded) + smoothed per run


def test_epochs_to_threshold_and_tail_stats(runs: Path):
    assert first_crossing([0, 1, 2, 3], [4.0, 2.0, 1.3, 1.0], 1.3) == 2
    assert first_crossing([0, 1, 2], [4.0, 2.0, 1.5], 1.0) is None
    assert first_crossing([0, 1, 2], [10, 50, 90], 50, "above") == 1
    mean, var = tail_stats([9.0, 1.0, 2.0, 3.0], 3)
    assert (mean, var) == pytest.approx((2.0, 2 / 3))

    data = load_convergence([runs], EventCache())
    table = stability_table(data, LOSS, threshold=1.0, last_n=3).set_index("run")
    # 4/(e+1) + 0.1*seed <= 1: seed 0 at e=3, seed 1 at e=4, seed 2 at e=4; par_wider (4 epochs) at e=3
    assert table.loc[["runs/cbam_s0", "runs/cbam_s1", "runs/cbam_s2", "runs/par_wider"], "reached_at"].tolist() == [
        3, 4, 4, 3]
    assert table.loc["runs/cbam_s0", "last3_mean"] == pytest.approx(np.mean([4 / 6, 4 / 7, 4 / 8]), abs=1e-6)
    ap = stability_table(data, AP, threshold=35, last_n=2).set_index("run")  # direction "above" for AP
    assert ap.loc["runs/cbam_s0", "reached_at"] == 4 and ap.loc["runs/cbam_s2", "reached_at"] == 4
    assert len(stability_figure(table.reset_index()).data) == 2
    by_model = stability_by_model(table.reset_index()).set_index(["model", "dataset"])
    assert by_model.loc[("cbam", "synthetic"), "reached"] == 3


def test_truncated_and_corrupt_files_are_counted_warnings(runs: Path):
    good = event_file(runs / "cbam_s0").read_bytes()
    whole, reason = scan_records(good)
    assert (whole, reason) == (len(good), None)
    event_file(runs / "cbam_s1").write_bytes(good[:-5])  # truncated mid-record
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    event_file(runs / "cbam_s2").write_bytes(bytes(bad))  # corrupt in the middle
    garbage = runs / "par_s0" / "events.out.tfevents.0.garbage"
    garbage.write_bytes(b"not an event file at all" * 4)

    data = load_convergence([runs], EventCache())
    assert len(data.warnings) == 3
    assert any("incomplete last record" in w and "cbam_s1" in w for w in data.warnings)
    assert sum("corrupt record" in w for w in data.warnings) == 2
    points = data.runs.set_index("run")["points"]
    assert points["runs/cbam_s0"] == 24 and points["runs/cbam_s1"] == 23 and 0 < points["runs/cbam_s2"] < 24
    assert points["runs/par_s0"] == 18  # its good file still reads
    status = data.runs.set_index("run")["status"]
    assert status["runs/cbam_s0"] == "ok" and "incomplete" in status["runs/cbam_s1"]


def last_record(path: Path) -> bytes:
    """The bytes of the final TFRecord of an event file (8-byte length, 4 CRC, data, 4 CRC)."""
    buf, pos, start = path.read_bytes(), 0, 0
    while pos < len(buf):
        start = pos
        pos += 16 + int.from_bytes(buf[pos:pos + 8], "little")
    return buf[start:]


def test_file_being_appended_is_read_incrementally(tmp_path: Path):
    run = tmp_path / "runs" / "live"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": "eca_cbam", "dataset": "synthetic", "seed": 3}))
    with SummaryWriter(str(tmp_path / "other")) as other:  # source of one well-formed record for step 6
        other.add_scalar(LOSS, loss_at(6, 0), 6)
    record = last_record(event_file(tmp_path / "other"))
    cache = EventCache()
    writer = SummaryWriter(str(run))
    try:
        for e in range(3):
            writer.add_scalar(LOSS, loss_at(e, 0), e)
        writer.flush()
        path = event_file(run)
        first = load_convergence([tmp_path / "runs"], cache)
        assert len(series(first, LOSS)) == 3 and first.warnings == ()

        for e in range(3, 6):
            writer.add_scalar(LOSS, loss_at(e, 0), e)
        writer.flush()
        with path.open("ab") as f:  # a writer caught mid-flush: half of the next record is on disk
            f.write(record[:20])
        second = load_convergence([tmp_path / "runs"], cache)
        assert series(second, LOSS)["step"].tolist() == list(range(6))
        assert len(second.warnings) == 1 and "still being written" in second.warnings[0]
        assert cache.read(path).parses == 2  # each read parsed only the new whole records

        with path.open("ab") as f:
            f.write(record[20:])
        third = load_convergence([tmp_path / "runs"], cache)
        assert series(third, LOSS)["step"].tolist() == list(range(7)) and third.warnings == ()
        assert cache.read(path).parses == 3
        assert cache.read(path).parses == 3  # unchanged file: not parsed again
    finally:
        writer.close()


def test_resumed_run_purges_orphaned_steps(tmp_path: Path):
    """A writer resumed with purge_step=T hides the first writer's events at step >= T (as TensorBoard does)."""
    run = tmp_path / "runs" / "resumed"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": "cbam", "dataset": "synthetic", "seed": 0}))
    step_tag = TB_TAGS["step_loss"]
    with SummaryWriter(str(run)) as first:
        for step in range(10):
            first.add_scalar(step_tag, 1.0, step)
    with SummaryWriter(str(run), purge_step=6) as second:
        for step in (6, 7):
            second.add_scalar(step_tag, 2.0, step)
    data = load_convergence([tmp_path / "runs"], EventCache())
    s = series(data, step_tag)
    assert s["step"].tolist() == list(range(8))
    assert s["value"].tolist() == [1.0] * 6 + [2.0] * 2
    assert data.runs["event_files"].iloc[0] == 2 and data.warnings == ()


def test_long_step_curves_are_thinned_for_drawing_only(tmp_path: Path):
    run = tmp_path / "runs" / "steps"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": "cbam", "dataset": "synthetic", "seed": 0}))
    with SummaryWriter(str(run)) as w:
        for step in range(5000):
            w.add_scalar(TB_TAGS["step_loss"], 1.0 + (step % 7), step)
    data = load_convergence([tmp_path / "runs"], EventCache())
    assert len(series(data, TB_TAGS["step_loss"])) == 5000
    (line,) = curve_figure(data, TB_TAGS["step_loss"], max_points=1000).data
    assert len(line.x) <= 1001 and line.x[-1] == 4999 and line.x[0] == 0
    assert curve_figure(data, TB_TAGS["step_loss"]).layout.xaxis.title.text == "step"


def test_vectorised_crc_matches_tensorboard():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    from eval.runs.tfevents.crc32c import masked_crc32c_many

    rng = np.random.default_rng(0)
    buf = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    lengths = np.array([0, 1, 8, 37, 100, 5000, 12])
    starts = np.array([5, 0, 100, 999, 3, 10_000, 19_988])
    got = masked_crc32c_many(buf, starts, lengths)
    assert got.tolist() == [masked_crc32c(buf[s:s + n]) for s, n in zip(starts, lengths, strict=True)]


def test_ema_in_blocks_equals_the_point_by_point_recurrence():
    """The vectorised EMA against TensorBoard's loop, long enough for many blocks, with non-finite values."""
    rng = np.random.default_rng(1)
    y = np.cumsum(rng.standard_normal(20_000)) + 50
    y[[5, 777, 15_000]] = [np.nan, np.inf, -np.inf]
    for w in (0.01, 0.3, 0.6, 0.9, 0.99, 0.999):
        expected = np.empty_like(y)
        last, count = 0.0, 0
        for i, v in enumerate(y):
            if not np.isfinite(v):
                expected[i] = v
                continue
            last = last * w + (1 - w) * v
            count += 1
            expected[i] = last / (1 - w**count)
        assert np.allclose(ema_smooth(y, w), expected, rtol=1e-9, atol=1e-9, equal_nan=True), w


def test_min_max_decimation_keeps_a_single_spike():
    """76k step losses with one spike: the drawn line has at most max_points points, and the spike."""
    steps = np.arange(76_000) * 10
    values = 1.0 + 0.01 * np.sin(steps / 500.0)
    values[41_234] = 25.0
    frame = pd.DataFrame({"run": "s/r", "model": "cbam", "dataset": "synthetic", "seed": 0,
                          "tag": TB_TAGS["step_loss"], "step": steps, "value": values, "wall_time": 0.0})
    data = ConvergenceData(runs=pd.DataFrame({"run": ["s/r"], "origin": ["x"]}), scalars=frame, warnings=())
    raw, smooth = curve_figure(data, TB_TAGS["step_loss"], smoothing=0.6, max_points=2000).data
    assert len(raw.x) <= 2000 and len(smooth.x) <= 2000
    assert 25.0 in list(raw.y) and steps[41_234] in list(raw.x)  # the raw (faded) line shows the spike
    assert max(smooth.y) == pytest.approx(ema_smooth(values, 0.6).max())  # and the smoothed one its bump
    idx = minmax_indices([values], 2000)
    every_kth = values[::-(-len(values) // 2000)]
    assert values[idx].max() == 25.0 and every_kth.max() < 2  # thinning every k-th point would lose it


def test_run_names_follow_one_rule_and_real_runs_come_first(tmp_path: Path):
    """`<root label>/<run folder>` for every run; the shipped demo root is labelled "demo"; same names in two
    roots get a suffix; WIDER FACE runs are listed (and drawn) before synthetic ones."""
    study = tmp_path / "study350"
    for seed in (0, 3):
        write_run(study, f"cbam_s{seed}", "cbam", seed, 3)
    demo = tmp_path / "repo" / "assets" / "demo" / "runs"
    write_run(demo, "cbam_s0", "cbam", 1, 2)  # another run: an identical run.json would be counted once
    write_run(tmp_path / "other" / "study350", "cbam_s0", "cbam", 5, 2)
    real = write_run(tmp_path / "repo" / "assets" / "reference" / "runs", "featherface_eca_cbam", "eca_cbam", 0, 2,
                     dataset="widerface")
    meta = json.loads((real / "run.json").read_text())
    (real / "run.json").write_text(json.dumps(meta | {"seed": None, "trained_by": "fokouarnaud/FeatherFace"}))
    roots = [study, tmp_path / "repo" / "assets" / "reference" / "runs", demo, tmp_path / "other" / "study350"]
    data = load_convergence(roots, EventCache())
    assert data.runs["run"].tolist() == ["reference/featherface_eca_cbam", "study350/cbam_s0", "study350/cbam_s3",
                                         "demo/cbam_s0", "study350/cbam_s0 (2)"]
    origin = data.runs.set_index("run")["origin"]
    assert origin["reference/featherface_eca_cbam"] == "trained on WIDER FACE by fokouarnaud/FeatherFace"
    assert "synthetic" in origin["demo/cbam_s0"] and "not WIDER FACE" in origin["demo/cbam_s0"]
    fig = curve_figure(data, LOSS)
    assert fig.data[0].legendgrouptitle.text.startswith("ECA-CBAM") and "widerface" in fig.data[0].legendgrouptitle.text
    assert [t.name for t in fig.data[1:3]] == ["seed 0", "seed 3"]  # legend entries per seed, grouped by model


SHIPPED_SOURCE_RUN = Path(__file__).resolve().parents[3] / "assets" / "reference" / "runs" / "featherface_eca_cbam"


def source_run(root: Path) -> Path:
    """A run folder holding the seed source's real log with the shipped run.json (assets/reference), or one
    made from ../shared/reference when the repository does not ship it."""
    from tests.eval.runs.test_event_files import source_log

    shipped = sorted(SHIPPED_SOURCE_RUN.glob("events.out.tfevents.*"))
    log = shipped[0] if shipped else source_log()
    if log is None:
        pytest.skip("the source's TensorBoard log is neither shipped nor in ../shared/reference")
    run = root / "featherface_eca_cbam"
    run.mkdir(parents=True)
    (run / log.name).write_bytes(log.read_bytes())
    meta = (json.loads((SHIPPED_SOURCE_RUN / "run.json").read_text()) if shipped else
            {"model": "eca_cbam", "dataset": "widerface", "seed": None, "trained_by": "fokouarnaud/FeatherFace"})
    (run / "run.json").write_text(json.dumps(meta))
    return run


def test_the_shipped_source_run_is_labelled_and_listed_first():
    """On a fresh clone the Convergence data start with the source's real log, labelled with its origin."""
    if not SHIPPED_SOURCE_RUN.is_dir():
        pytest.skip("assets/reference/runs/featherface_eca_cbam is not shipped in this checkout")
    from core.lab.roots import resolve_roots

    roots = resolve_roots([], {}, Path(__file__).resolve().parents[3])
    data = load_convergence(roots.runs, EventCache())
    first = data.runs.iloc[0]
    assert (first["run"], first["origin"], first["last_epoch"]) == (
        "reference/featherface_eca_cbam", "trained on WIDER FACE by fokouarnaud/FeatherFace", 350)
    synthetic = data.runs[data.runs["dataset"] == "synthetic"]
    assert len(synthetic) and synthetic["origin"].str.contains("synthetic").all()
    assert synthetic.index.min() > 0


def test_source_log_fills_the_loss_and_lr_panels(tmp_path: Path):
    """Issue 17 item 4: Loss/*, Learning_Rate and Epoch/* of fokouarnaud/FeatherFace land on our panels."""
    source_run(tmp_path / "reference")
    extra = write_run(tmp_path / "runs", "custom", "cbam", 0, 3)
    with SummaryWriter(str(extra)) as w:
        w.add_scalar("custom/grad_norm", 1.5, 0)
    data = load_convergence([tmp_path / "reference", tmp_path / "runs"], EventCache())
    row = data.runs.set_index("run").loc["reference/featherface_eca_cbam"]
    assert (row["last_epoch"], row["points"], row["status"]) == (350, 16_450, "ok")
    metrics = available_metrics(data)
    for label in ("Train loss (total)", "Learning rate", "Train loss per step", "Train loss per step: box",
                  "Train loss per step: class", "Train loss per step: landmark", "Learning rate per step"):
        assert label in metrics
    epoch_loss = series(data, metrics["Train loss (total)"]).query("run == 'reference/featherface_eca_cbam'")
    assert epoch_loss["step"].tolist() == list(range(1, 351))
    steps = series(data, metrics["Train loss per step"]).query("run == 'reference/featherface_eca_cbam'")
    assert len(steps) == 3150 and steps["step"].max() > 140_000
    # a tag the page does not know is still plotted, in its own "Other" panel, by default
    assert metrics["Other: custom/grad_norm"] == "custom/grad_norm"
    assert "Other: custom/grad_norm" in default_curves(metrics)
    assert default_curves(metrics)[:2] == ["Train loss (total)", "Learning rate"]


def test_mean_of_seeds_is_the_default_beyond_six_runs(tmp_path: Path):
    for seed in range(4):
        for model in ("cbam", "eca_cbam"):
            write_run(tmp_path / "runs", f"{model}_s{seed}", model, seed, 3)
    data = load_convergence([tmp_path / "runs"], EventCache())
    assert mean_of_seeds_default(data) and not mean_of_seeds_default(select_runs(data, ["cbam"]))
    fig = curve_figure(data, LOSS, aggregate=True)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["CBAM baseline · synthetic (n=4)",
                                                                       "ECA-CBAM sequential · synthetic (n=4)"]


def test_a_seed_that_is_not_a_number_is_no_seed(tmp_path: Path):
    run = write_run(tmp_path / "runs", "odd", "cbam", 0, 3)
    (run / "run.json").write_text(json.dumps({"model": "cbam", "dataset": "synthetic", "seed": "first"}))
    data = load_convergence([tmp_path / "runs"], EventCache())
    assert data.scalars["seed"].isna().all() and len(data.scalars) == 9
    assert [t.name for t in curve_figure(data, LOSS).data] == ["runs/odd"]  # named by the run, not "seed …"


def test_an_infinite_loss_is_a_gap_in_the_mean_of_seeds(tmp_path: Path):
    """The source's real log holds inf epoch losses: drawn as gaps, never as inf points a band wraps around."""
    for seed in (0, 1):
        run = tmp_path / "runs" / f"cbam_s{seed}"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"model": "cbam", "dataset": "synthetic", "seed": seed}))
        with SummaryWriter(str(run)) as w:
            for e in range(5):
                w.add_scalar(LOSS, float("inf") if e == 2 else loss_at(e, seed), e)
    fig = curve_figure(load_convergence([tmp_path / "runs"], EventCache()), LOSS, aggregate=True)
    for trace in fig.data:
        y = np.asarray(trace.y, dtype=np.float64)
        assert not np.isinf(y).any() and np.isnan(y[2])
