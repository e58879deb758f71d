"""Learning-rate schedule: linear warm-up, then step decay at epoch milestones (per-iteration).

As in RetinaFace's ``adjust_learning_rate``: during the first ``warmup_epochs`` the rate climbs
linearly from ``1e-6`` to the base rate; afterwards it is ``base * gamma ** k`` with ``k`` the
number of milestones already reached. The rate is a pure function of the number of optimiser
steps taken (the global step, minus any step mixed precision skipped on inf gradients, see
``train.stepper``), so a resumed run gets exactly the rate an uninterrupted one would have had.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

from core.lab.recipes import DEFAULT_RECIPE, get_recipe

PUBLISHED_MAX_EPOCH = get_recipe(DEFAULT_RECIPE).max_epoch
PUBLISHED_LR_STEPS: tuple[int, ...] = get_recipe(DEFAULT_RECIPE).lr_steps
WARMUP_START_LR = 1e-6


def scale_lr_steps(steps: tuple[int, ...] | list[int], base_epochs: int, max_epoch: int) -> list[int]:
    """Milestones of a `base_epochs` recipe scaled to ``max_epoch``, rounded, >= 1 (same fraction of
    training at each rate); unchanged when ``max_epoch == base_epochs``."""
    return [max(1, round(step * max_epoch / base_epochs)) for step in steps]


def default_lr_steps(max_epoch: int) -> list[int]:
    """The published FeatherFace milestones (190, 220 of 350 epochs) scaled to ``max_epoch``.

    E.g. 100 epochs -> [54, 63], 2 -> [1, 1].
    """
    return scale_lr_steps(PUBLISHED_LR_STEPS, PUBLISHED_MAX_EPOCH, max_epoch)


def lr_at(
    step: int, base_lr: float, steps_per_epoch: int, warmup_epochs: float, lr_steps: list[int], gamma: float
) -> float:
    """Learning rate for global step ``step`` (0-based)."""
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return WARMUP_START_LR + (base_lr - WARMUP_START_LR) * step / warmup_steps
    decays = sum(step >= milestone * steps_per_epoch for milestone in lr_steps)
    return base_lr * gamma**decays


class WarmupMultiStepLR(LRScheduler):
    """``torch`` scheduler wrapper around `lr_at`, stepped once per iteration.

    Its ``state_dict`` holds only numbers and lists, so it is safe for ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        warmup_epochs: float,
        lr_steps: list[int],
        gamma: float,
        last_epoch: int = -1,
    ) -> None:
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.lr_steps = [int(s) for s in lr_steps]
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            lr_at(self.last_epoch, base, self.steps_per_epoch, self.warmup_epochs, self.lr_steps, self.gamma)
            for base in self.base_lrs
        ]
