"""Data-parallel plumbing for torchrun: one process per device, NCCL on GPU, gloo on CPU.

:func:`setup` reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) and
initialises the default process group once; without torchrun it is a 1-process "world".
Gradients are averaged with one ``all_reduce`` of a flat buffer per step
(:func:`average_gradients`): every rank trains the same sampled paths (the path sampler is
a function of the step), so the set of parameters with gradients is the same on every rank.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from dna_zoo.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str | None = None) -> World:
    """The current world; initialises torch.distributed under torchrun (once)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device '{device}'", hint="use cpu or cuda (cuda:N)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available", hint="use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device '{device}' is not supported here", hint="use cpu or cuda")
    if dev.type == "cuda":
        dev = rank_device(dev, local_rank, size)
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(**process_group_options(dev))
    if dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
    return World(rank, size, local_rank, dev)


def rank_device(dev: torch.device, local_rank: int, size: int) -> torch.device:
    """The GPU of this rank: ``cuda:LOCAL_RANK`` under torchrun with more than one rank (a
    ``cuda:N`` asked for would put every rank on GPU N), else ``cuda:N`` / ``cuda:LOCAL_RANK``."""
    if size > 1:
        if dev.index is not None and dev.index != local_rank:
            log.warning("%s ignored with %d ranks: rank %d uses cuda:%d", dev, size, local_rank, local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cuda", local_rank if dev.index is None else dev.index)


def process_group_options(dev: torch.device) -> dict[str, Any]:
    """``init_process_group`` arguments: NCCL bound to this rank's GPU (``device_id``), or gloo."""
    if dev.type == "cuda":
        return {"backend": "nccl", "device_id": dev}
    return {"backend": "gloo"}


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Average the gradients of ``params`` over ranks (params without a grad are skipped)."""
    if not world.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_module(module: torch.nn.Module, world: World) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not world.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj``, on every rank (gloo and NCCL both support objects)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out
