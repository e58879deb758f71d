"""Training CLI end to end on a tiny synthetic set (128 px, batch 4, 2 steps per epoch, CPU, in-process).

Covers: event file tags and step counts, last/best/Final checkpoints, run.json, crash + ``--resume
auto`` (identical steps and weights to an uninterrupted run), NaN stop keeping the last good
checkpoint, argument errors, and the LR schedule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.checkpoint import load_checkpoint, read_checkpoint
from core.lab.artifacts import TB_TAGS
from core.losses import LossTerms, MultiBoxLoss
from core.synth.generate import generate_dataset
from tests.conftest import exit_status
from train.cli import main
from train.schedule import default_lr_steps, lr_at

pytestmark = pytest.mark.usefixtures("one_thread")

NETWORK = "eca_cbam"
EPOCHS, STEPS_PER_EPOCH = 2, 2  # 8 images / batch 4


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("train_data") / "synth", num_train=8, num_val=4, seed=0)


def cli_args(data: Path, out: Path, run_name: str, *extra: str) -> list[str]:
    return [
        "--network", NETWORK, "--data", str(data), "--out", str(out), "--run-name", run_name,
        "--max-epoch", str(EPOCHS), "--batch-size", "4", "--img-size", "128", "--workers", "0",
        "--warmup-epochs", "1", "--lr-steps", "1", "--eval-every", "2", "--eval-size", "128", "--no-progress",
        "--device", "cpu", *extra,
    ]  # fmt: skip


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series as TensorBoard shows it (purged steps of a resumed run removed)."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def full_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(cli_args(synth_data, out, "full")) == 0
    return out / "full"


def test_two_epoch_run_writes_every_tag_with_the_right_steps(full_run: Path) -> None:
    series = scalars(full_run)
    assert set(series) == set(TB_TAGS.values())
    total_steps = EPOCHS * STEPS_PER_EPOCH
    for tag in TB_TAGS.values():
        steps = [s for s, _ in series[tag]]
        if tag.startswith("train_step/"):
            assert steps == list(range(total_steps)), tag
        elif tag.startswith("val/ap_"):
            assert steps == [2], tag  # --eval-every 2
        else:
            assert steps == [1, 2], tag
    for key in ("ap_easy", "ap_medium", "ap_hard"):
        assert 0.0 <= series[TB_TAGS[key]][0][1] <= 100.0
    lrs = [v for _, v in series[TB_TAGS["step_lr"]]]
    # Warm-up over epoch 1 (steps 0, 1), then x0.1 once 1 epoch is done (--lr-steps 1).
    assert lrs == pytest.approx([1e-6, 1e-6 + (1e-3 - 1e-6) / 2, 1e-4, 1e-4])
    assert len(list(full_run.glob("events.out.tfevents.*"))) == 1


def test_checkpoints_load_and_carry_the_run_state(full_run: Path) -> None:
    for name in ("last", "best", "Final"):
        model, data = load_checkpoint(full_run / "weights" / f"{name}.pth", expected_name=NETWORK)
        assert model.name == NETWORK
    last = read_checkpoint(full_run / "weights" / "last.pth")
    assert (last["epoch"], last["global_step"], last["steps_per_epoch"]) == (EPOCHS, 4, STEPS_PER_EPOCH)
    assert {"optimizer", "scheduler", "rng", "best"} <= set(last)
    assert last["best"]["metric"] == "val_ap_mean" and last["best"]["epoch"] == 2
    final = read_checkpoint(full_run / "weights" / "Final.pth")
    torch.testing.assert_close(final["state_dict"], last["state_dict"])
    meta = json.loads((full_run / "run.json").read_text())
    assert meta["model"] == NETWORK and meta["dataset"] == "synthetic" and meta["seed"] == 0
    assert meta["status"] == "finished" and meta["steps_per_epoch"] == STEPS_PER_EPOCH
    assert meta["args"]["max_epoch"] == EPOCHS and meta["created"]
    assert (meta["neg_pos"], meta["match_iou"]) == (7, 0.35)  # the same for every model
    assert meta["recipe"] == "featherface"
    assert meta["recipe_overrides"] == ["batch_size", "img_size", "lr_steps", "max_epoch", "warmup_epochs"]


def test_neg_pos_and_match_iou_reach_the_loss(
    synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train.trainer import Trainer

    seen = {}
    original = Trainer._build_model

    def spy(self: Trainer, **kwargs: object) -> None:
        original(self, **kwargs)
        seen.update(ratio=self.criterion.neg_pos_ratio, iou=self.criterion.overlap_threshold)
        raise KeyboardInterrupt  # stop before any training step

    monkeypatch.setattr(Trainer, "_build_model", spy)
    with pytest.raises(KeyboardInterrupt):
        main(cli_args(synth_data, tmp_path, "np", "--neg-pos", "3", "--match-iou", "0.5"))
    assert seen == {"ratio": 3, "iou": 0.5}
    with pytest.raises(SystemExit):
        main(cli_args(synth_data, tmp_path, "np", "--match-iou", "1.5"))


def fail_at_training_call(monkeypatch: pytest.MonkeyPatch, call: int, action: str) -> dict[str, int]:
    """Patch the loss: at the ``call``-th training forward (val passes run without grad), crash or give NaN."""
    original = MultiBoxLoss.forward
    calls = {"n": 0}

    def patched(self: MultiBoxLoss, *args: object, **kwargs: object) -> LossTerms:
        terms = original(self, *args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == call:
                if action == "crash":
                    raise KeyboardInterrupt("simulated kill")
                return LossTerms(terms.total * float("nan"), terms.box, terms.cls, terms.landmark)
        return terms

    monkeypatch.setattr(MultiBoxLoss, "forward", patched)
    return calls


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_auto_matches_an_uninterrupted_run(
    synth_data: Path, full_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = cli_args(synth_data, tmp_path, "resumed")
    with monkeypatch.context() as patch:
        fail_at_training_call(patch, call=4, action="crash")  # epoch 2, step 2: its step 1 was already logged
        with pytest.raises(KeyboardInterrupt):
            main(args)
    run = tmp_path / "resumed"
    assert read_checkpoint(run / "weights" / "last.pth")["epoch"] == 1
    assert not (run / "weights" / "Final.pth").exists()

    assert main([*args, "--resume", "auto"]) == 0
    final = read_checkpoint(run / "weights" / "Final.pth")
    reference = read_checkpoint(full_run / "weights" / "Final.pth")
    assert (final["epoch"], final["global_step"]) == (reference["epoch"], reference["global_step"]) == (2, 4)
    # Same batches, augmentation and LR after the resume: on CPU the weights are bitwise those of the
    # uninterrupted run (the README's determinism note rests on this).
    for key, value in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key

    resumed, uninterrupted = scalars(run), scalars(full_run)
    for tag in (TB_TAGS["step_loss"], TB_TAGS["step_lr"], TB_TAGS["train_loss"]):
        assert [s for s, _ in resumed[tag]] == [s for s, _ in uninterrupted[tag]], tag  # stale step 2 purged
        assert [v for _, v in resumed[tag]] == pytest.approx([v for _, v in uninterrupted[tag]], rel=1e-4), tag
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and [r["epoch"] for r in meta["resumes"]] == [1]


@pytest.mark.slow
def test_resume_with_dataloader_workers_matches_an_uninterrupted_run(
    synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same as above with ``--workers 2``: the augmentation then runs in worker processes seeded from
    the loader's generator, which must be reset per epoch for the resumed epoch to replay exactly."""

    def args(name: str) -> list[str]:
        out = cli_args(synth_data, tmp_path, name)
        out[out.index("--workers") + 1] = "2"
        return out

    assert main(args("uninterrupted")) == 0
    with monkeypatch.context() as patch:
        fail_at_training_call(patch, call=3, action="crash")  # first step of epoch 2
        with pytest.raises(KeyboardInterrupt):
            main(args("resumed"))
    assert read_checkpoint(tmp_path / "resumed" / "weights" / "last.pth")["epoch"] == 1
    assert main([*args("resumed"), "--resume", "auto"]) == 0

    final = read_checkpoint(tmp_path / "resumed" / "weights" / "Final.pth")
    reference = read_checkpoint(tmp_path / "uninterrupted" / "weights" / "Final.pth")
    assert final["global_step"] == reference["global_step"] == 4
    torch.testing.assert_close(final["state_dict"], reference["state_dict"], rtol=1e-4, atol=1e-5)
    resumed, uninterrupted = scalars(tmp_path / "resumed"), scalars(tmp_path / "uninterrupted")
    tag = TB_TAGS["step_loss"]
    assert [v for _, v in resumed[tag]] == pytest.approx([v for _, v in uninterrupted[tag]], rel=1e-4)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fail_at_training_call(monkeypatch, call=3, action="nan")  # epoch 2, step 1
    assert main(cli_args(synth_data, tmp_path, "nan")) == 3
    assert calls["n"] == 4, "the loss is checked at the end of the logging interval (here the epoch), not per step"
    message = capsys.readouterr().err
    assert "non-finite loss at epoch 2, step 1/2 (global step 2)" in message
    assert "last good checkpoint" in message and "kept unchanged" in message
    weights = tmp_path / "nan" / "weights"
    last = read_checkpoint(weights / "last.pth")
    assert (last["epoch"], last["global_step"]) == (1, 2)
    assert not (weights / "Final.pth").exists()
    meta = json.loads((tmp_path / "nan" / "run.json").read_text())
    assert meta["status"] == "failed" and "epoch 2" in meta["error"]
    assert [s for s, _ in scalars(tmp_path / "nan")[TB_TAGS["step_loss"]]] == [0, 1], "no step logged from NaN on"


def test_log_every_one_checks_every_step(
    synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fail_at_training_call(monkeypatch, call=2, action="nan")  # epoch 1, step 2
    assert main(cli_args(synth_data, tmp_path, "nan1", "--log-every", "1")) == 3
    assert calls["n"] == 2
    assert "non-finite loss at epoch 1, step 2/2 (global step 1)" in capsys.readouterr().err
    assert not (tmp_path / "nan1" / "weights" / "last.pth").exists()


def test_argument_and_run_dir_errors(
    synth_data: Path, full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli_args(synth_data, tmp_path, "x")
    no_name = [a for a in args if a not in ("--run-name", "x")]
    assert main([*no_name, "--resume", "auto"]) == 2
    assert "--run-name" in capsys.readouterr().err
    # A fresh run into a directory that already holds one would mix two runs' event files.
    assert main(cli_args(synth_data, full_run.parent, full_run.name)) == 2
    assert "--resume auto" in capsys.readouterr().err
    assert main([*args, "--batch-size", "16"]) == 2
    assert "fewer than --batch-size 16" in capsys.readouterr().err
    assert exit_status(main, [*args, "--resume", str(tmp_path / "missing.pth")]) == 2  # refused while parsing
    assert "argument --resume: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--network", "resnet"])


def test_published_lr_steps_scale_with_max_epoch() -> None:
    assert default_lr_steps(350) == [190, 220]
    assert default_lr_steps(100) == [54, 63]
    assert default_lr_steps(2) == [1, 1]


def test_lr_warms_up_linearly_then_steps_down() -> None:
    def lr(step: int) -> float:
        return lr_at(step, base_lr=1e-3, steps_per_epoch=10, warmup_epochs=5, lr_steps=[190, 220], gamma=0.1)

    assert lr(0) == pytest.approx(1e-6)
    assert lr(25) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert lr(50) == pytest.approx(1e-3) and lr(1899) == pytest.approx(1e-3)
    assert lr(1900) == pytest.approx(1e-4) and lr(2200) == pytest.approx(1e-5)


def test_validation_runs_with_cudnn_autotuning_off_and_is_timed(
    synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training on CUDA turns ``cudnn.benchmark`` on; the val passes (many image sizes) must run with it off
    and it must be back on afterwards. On CPU the flag does nothing, so only the switching is checked."""
    import train.trainer as trainer

    seen: list[tuple[str, bool]] = []

    def spy(name: str, fn):
        def wrapped(*args, **kwargs):
            seen.append((name, torch.backends.cudnn.benchmark))
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(trainer, "val_losses", spy("loss", trainer.val_losses))
    monkeypatch.setattr(trainer, "val_ap", spy("ap", trainer.val_ap))
    assert main(cli_args(synth_data, tmp_path, "cudnn", "--max-epoch", "1")) == 0
    assert seen == [("loss", False), ("ap", False)]
    assert torch.backends.cudnn.benchmark is True
    val_time = scalars(tmp_path / "cudnn")[TB_TAGS["val_time"]]
    assert [s for s, _ in val_time] == [1] and val_time[0][1] > 0
