"""Process-group plumbing for ``torchrun``: one code path for single-process and DDP training.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the group is initialised with NCCL when
training on CUDA and gloo on CPU; each rank uses ``cuda:LOCAL_RANK`` (`resolve_device`). Without ``torchrun`` every
helper is a no-op, so the trainer never branches on "am I distributed" except for the sampler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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


class DeviceChoiceError(ValueError):
    """The requested device cannot work for this process (e.g. a fixed GPU index under torchrun)."""


def resolve_device(
    preference: str | None, env: Mapping[str, str] | None = None, cuda_count: int | None = None
) -> torch.device:
    """This process's device: ``preference`` (``--device``; "auto"/None = not given), else FEATHERFACE_DEVICE,
    else auto.

    Single process: as `core.device.select_device`. Under torchrun (WORLD_SIZE > 1) LOCAL_RANK picks the
    GPU: "auto" and "cuda" mean ``cuda:LOCAL_RANK``, "cpu" stays CPU, and an explicit ``cuda:N`` is refused,
    since it would put every rank on GPU N and NCCL would fail with a duplicate-GPU error.
    """
    env = os.environ if env is None else env
    given = preference if preference and preference.strip().lower() != "auto" else None
    source = "--device" if given else "FEATHERFACE_DEVICE"
    choice = (given or env.get("FEATHERFACE_DEVICE") or "auto").strip().lower()
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return select_device(choice)
    count = torch.cuda.device_count() if cuda_count is None else cuda_count
    if choice == "auto":
        choice = "cuda" if count > 0 else "cpu"
    try:
        device = torch.device(choice)
    except RuntimeError as exc:
        raise DeviceChoiceError(f"{source} {choice!r}: not a device ({exc})") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceChoiceError(f"{source} {choice!r}: under torchrun use cpu, cuda or auto")
    if device.index is not None:
        raise DeviceChoiceError(
            f"{source} {choice!r} under torchrun would put all {world_size} processes on GPU {device.index} "
            "(NCCL fails with a duplicate-GPU error): each process uses cuda:LOCAL_RANK. Use --device cuda "
            "(or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
    if count == 0:
        raise DeviceChoiceError(f"{source} {choice!r} requested but CUDA is not available on this machine")
    local_rank = int(env.get("LOCAL_RANK", "0"))
    if local_rank >= count:
        raise DeviceChoiceError(f"LOCAL_RANK {local_rank} but only {count} GPU(s) visible: start at most {count} "
                                "processes per node (--nproc_per_node)")
    return torch.device("cuda", local_rank)


def setup(device_preference: str | None) -> DistContext:
    """Pick the device (`resolve_device`) and, under torchrun, join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference)
    if world_size == 1:
        return DistContext(0, 1, 0, device)
    if device.type == "cuda":
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
