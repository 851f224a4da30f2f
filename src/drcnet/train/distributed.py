"""Process-group facts and helpers for training under ``torchrun`` (DistributedDataParallel).

Under ``torchrun`` (``WORLD_SIZE > 1``) every process trains a ``DistributedDataParallel``
replica (backend ``gloo`` on CPU, ``nccl`` on CUDA) on its ``DistributedSampler`` shard. Each
shard has ``ceil(N / world)`` objects (the sampler pads by repeating a few), so an epoch is

    steps_per_epoch = ceil(ceil(N / world) / batch) = ceil(N / (world * batch))

optimiser steps in every process, with an effective batch of ``world * batch``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Process-group facts (world 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    initialised_here: bool = False

    @property
    def is_dist(self) -> bool:
        return self.world > 1


def steps_per_epoch(n_objects: int, world: int, batch_size: int) -> int:
    """Optimiser steps per epoch and process: ``ceil(N / (world * batch))`` (see module docstring)."""
    return math.ceil(math.ceil(n_objects / world) / batch_size)


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local GPU) if available, else CPU.

    Raises
    ------
    RuntimeError
        ``cuda`` asked for but torch sees no CUDA device.
    """
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    return torch.device("cpu")


def init_distributed(device_pref: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (env ``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_pref, local_rank)
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        here = True
    return DistInfo(rank, world, local_rank, local_world, here)


def all_reduce_sums(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum ``values`` over all processes (returned unchanged outside DDP)."""
    if not info.is_dist:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of epoch ``epoch`` in process ``rank`` (data order and dropout of that epoch)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + int(rank) * 104_729) % (2**63 - 1)
