"""torch.distributed plumbing for training, evaluation and sharded prediction: start-up from torchrun's environment,
rank queries and the few collectives they need. A single process is a world of size 1, and every helper works there.

Backend: nccl when the device is CUDA, gloo otherwise. Under ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/
``MASTER_ADDR`` set) `setup` initialises the default process group; if the caller already did, it is reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from timm.layers import convert_sync_batchnorm as timm_convert_sync_batchnorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "DistContext",
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "convert_sync_batchnorm",
    "local_rank",
    "process_share",
    "setup",
    "teardown",
]


@dataclass
class DistContext:
    """Where this process stands: its rank, the world size and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """The compute device: `device` as given (``"cuda"`` means this process's GPU), else CUDA if present, else CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def setup(device: str | torch.device | None = None) -> DistContext:
    """Join (or start, under torchrun) the default process group and pick this process's device."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))
        resolved = resolve_device(device, local_rank)
        return DistContext(rank, world, local_rank, resolved, owns_group=False)
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    resolved = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(device=resolved)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved, owns_group=True)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if `setup` started it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def current() -> tuple[int, int]:
    """``(rank, world_size)`` of the default group, ``(0, 1)`` outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank() -> int:
    """This process's index on its node (torchrun's ``LOCAL_RANK``), 0 outside torchrun."""
    return _env_int("LOCAL_RANK", 0)


def process_share() -> tuple[int, int]:
    """``(rank, world_size)`` that decides which share of the work is this process's: the default group's when one
    is initialised, else torchrun's ``RANK`` / ``WORLD_SIZE``, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of a group")
    return rank, world


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes, in place (a no-op in a single process)."""
    if current()[1] > 1:
        if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
            on_gpu = tensor.cuda()
            dist.all_reduce(on_gpu)
            tensor.copy_(on_gpu.cpu())
        else:
            dist.all_reduce(tensor)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order."""
    if current()[1] == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so all hold the same model.

    DDP synchronises buffers at the start of each forward only; the last training forward leaves each rank with
    its own statistics.
    """
    if current()[1] > 1:
        for buffer in module.buffers():
            if dist.get_backend() == "nccl" and buffer.device.type != "cuda":
                on_gpu = buffer.cuda()
                dist.broadcast(on_gpu, 0)
                buffer.copy_(on_gpu.cpu())
            else:
                dist.broadcast(buffer, 0)


def barrier() -> None:
    if current()[1] > 1:
        dist.barrier()


def convert_sync_batchnorm(module: nn.Module) -> Callable[[], None]:
    """Swap every BatchNorm layer of `module` for a synchronised one, in place; returns the function that swaps
    the original layers back.

    timm's converter is used, so timm's BatchNorm+activation layers keep their activation. The synchronised layers
    share the originals' parameters and buffers, so the originals hold the trained values when restored.
    """
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                setattr(parent, name, timm_convert_sync_batchnorm(child))
                swaps.append((parent, name, child))

    def restore() -> None:
        for parent, name, original in swaps:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)

    return restore
