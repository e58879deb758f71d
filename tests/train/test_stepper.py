"""ScaledStepper: the LR schedule advances only when GradScaler really took the optimiser step.

A real GradScaler, enabled on CPU (the same class and inf/NaN skip logic as on CUDA), with a forced
inf gradient. Not covered here: fp16 autocast itself, which the trainer enables on CUDA only.
"""

from __future__ import annotations

import pytest
import torch

from train.schedule import WarmupMultiStepLR
from train.stepper import ScaledStepper


def make(enabled: bool = True) -> tuple[torch.nn.Parameter, ScaledStepper]:
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=1e-2, foreach=True)
    scheduler = WarmupMultiStepLR(optimizer, steps_per_epoch=2, warmup_epochs=2, lr_steps=[5], gamma=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=enabled)
    return param, ScaledStepper(optimizer, scheduler, scaler)


def test_an_inf_gradient_skips_the_update_and_holds_the_schedule() -> None:
    param, stepper = make()
    assert stepper.step((param * 2).sum())
    lr_after_one, weights = stepper.optimizer.param_groups[0]["lr"], param.detach().clone()
    assert stepper.scheduler.last_epoch == 1

    assert not stepper.step((param * float("inf")).sum()), "GradScaler must skip an inf step"
    assert stepper.scheduler.last_epoch == 1 and stepper.optimizer.param_groups[0]["lr"] == lr_after_one
    assert torch.equal(param.detach(), weights)
    assert stepper.scaler.get_scale() == 512.0 and stepper.skipped == 1

    assert stepper.step((param * 2).sum())
    assert stepper.scheduler.last_epoch == 2 and stepper.optimizer.param_groups[0]["lr"] > lr_after_one
    assert not torch.equal(param.detach(), weights)


def test_without_amp_every_step_advances_the_schedule() -> None:
    param, stepper = make(enabled=False)
    for _ in range(3):
        assert stepper.step((param * 2).sum())
    assert stepper.scheduler.last_epoch == 3 and stepper.skipped == 0


def test_a_fused_optimiser_is_refused() -> None:
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=1e-2, fused=True)
    scheduler = WarmupMultiStepLR(optimizer, 2, 0, [5], 0.1)
    with pytest.raises(ValueError, match="fused"):
        ScaledStepper(optimizer, scheduler, torch.amp.GradScaler("cpu"))
