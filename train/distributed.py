"""Process-group plumbing for ``torchrun``: one code path for single-process and DDP training.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the group is initialised with NCCL when
training on CUDA and gloo on CPU; each rank uses ``cuda:LOCAL_RANK``. Without ``torchrun`` every
helper is a no-op, so the trainer never branches on "am I distributed" except for the sampler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from core.device import select_device


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank 0 alone logs, evaluates and writes checkpoints."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_preference: str | None) -> DistContext:
    """Pick the device and, under torchrun, join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference)
    if world_size == 1:
        return DistContext(0, 1, 0, device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
    return DistContext(rank, world_size, local_rank, device)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint others will read)."""
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (a copy); identity for a single process.

    Used for logged losses, so a NaN on any rank is seen by all of them and every rank stops
    at the same step instead of deadlocking in the next collective.
    """
    if not ctx.distributed:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size


def broadcast_object(ctx: DistContext, obj: object) -> object:
    """Rank 0's value of ``obj`` on every rank (e.g. the resume decision)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
