"""eval.convergence on real event files written by torch's SummaryWriter (several models and seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from core.artifacts import TB_TAGS
from eval.convergence import (
    curve_figure,
    ema_smooth,
    first_crossing,
    load_convergence,
    seed_band,
    series,
    stability_by_model,
    stability_figure,
    stability_table,
    tail_stats,
)
from eval.event_files import EventCache, scan_records

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
    assert len(fig.data) == 3 * 3  # (cbam, synthetic), (par, synthetic), (par, widerface): upper, lower, mean
    assert sum(t.fill == "tonexty" for t in fig.data) == 3
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

    from eval.event_files import _masked_crc32c_many

    rng = np.random.default_rng(0)
    buf = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    lengths = np.array([0, 1, 8, 37, 100, 5000, 12])
    starts = np.array([5, 0, 100, 999, 3, 10_000, 19_988])
    got = _masked_crc32c_many(buf, starts, lengths)
    assert got.tolist() == [masked_crc32c(buf[s:s + n]) for s, n in zip(starts, lengths, strict=True)]
