"""Backward + optimiser step under a GradScaler, advancing the LR schedule only for steps really taken.

With mixed precision, GradScaler skips the optimiser step when the scaled gradients hold inf/NaN
(and lowers the scale). Stepping the schedule anyway would move the warm-up and the decay
milestones ahead of the weights; RetinaFace-style schedules are defined per optimiser update.
The step is detected with an optimiser step hook, which fires only when ``optimizer.step`` runs,
so it adds no host sync of its own (GradScaler's inf check already makes one under AMP; without
AMP the scaler is disabled, every step is taken and nothing waits for the device).
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler


class ScaledStepper:
    """``step(loss)``: scaled backward, unscale + inf check, optimiser step, scale update, schedule step."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: LRScheduler, scaler: torch.amp.GradScaler) -> None:
        if getattr(optimizer, "_step_supports_amp_scaling", False):
            # A fused optimiser takes the inf check inside its own step, on the device: the hook
            # below would fire for skipped steps too.
            raise ValueError("ScaledStepper needs an optimiser GradScaler can skip (not fused=True)")
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.skipped = 0  # optimiser steps GradScaler skipped (inf/NaN gradients) in this process
        self._taken = False
        optimizer.register_step_post_hook(self._on_step)

    def _on_step(self, _optimizer: torch.optim.Optimizer, _args: tuple, _kwargs: dict) -> None:
        self._taken = True

    def step(self, loss: torch.Tensor) -> bool:
        """Backpropagate ``loss`` and update; True when the optimiser step was taken."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._taken = False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self._taken:
            self.scheduler.step()
        else:
            self.skipped += 1
        return self._taken
