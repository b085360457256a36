"""Distributed helpers: read the torchrun environment, fall back to one process, shard data resumably.

Under `torchrun` the variables RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT from the rendezvous)
are set; `init_distributed` then starts a process group (NCCL on CUDA, gloo on CPU). Without them it is a
single process and every helper here is a no-op. One flag, `DistEnv.is_main`, gates all I/O.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from mcl_video.errors import UsageError
from mcl_video.models import dist as process_group  # is_initialized, world_size, rank: one home
from mcl_video.sampling.keys import EpochKey


@dataclass(frozen=True)
class DistEnv:
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


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when available; `cuda` fails with a clear message when it is not."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device: str = "auto") -> DistEnv:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local_rank)
    if world_size > 1 and not process_group.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                device_id=dev if dev.type == "cuda" else None)
    elif process_group.is_initialized():  # started by the caller (tests, notebooks)
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if process_group.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if process_group.world_size() > 1:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor (returned as a new tensor; identity at world size 1)."""
    if process_group.world_size() == 1:
        return values.clone()
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_min(value: torch.Tensor) -> torch.Tensor:
    if process_group.world_size() == 1:
        return value.clone()
    out = value.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MIN)
    return out


def any_rank(flag: bool) -> bool:
    """True when `flag` is true on any rank (collective under a process group)."""
    if process_group.world_size() == 1:
        return bool(flag)
    backend_cuda = dist.get_backend() == "nccl"
    t = torch.tensor([int(flag)], device="cuda" if backend_cuda else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_objects(obj) -> list:
    """`[obj_rank0, obj_rank1, ...]` (pickled through the process group; `[obj]` at world size 1)."""
    if process_group.world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ResumableShardSampler(Sampler):
    """Deterministic shuffled shard of the dataset for one rank, resumable mid-epoch.

    The permutation of epoch e is drawn from `torch.Generator().manual_seed(seed + e)` (identical on
    every rank), truncated to a multiple of `world_size * batch_size` (whole global batches only), and
    rank r takes positions r, r + world_size, ... . `set_epoch(e, start_batch=b)` skips the first b
    local batches, so a resumed run sees exactly the samples the interrupted one would have.

    With ``epoch_keys=True`` it yields :class:`~mcl_video.sampling.keys.EpochKey` ``(epoch, index)``
    pairs instead of indices: the epoch then reaches DataLoader workers with every item, so they can
    persist across epochs (see :mod:`mcl_video.training.loader`).
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True, epoch_keys: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"ResumableShardSampler: rank {rank} outside world size {world_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.epoch, self.start_batch = 0, 0
        self.epoch_keys = epoch_keys

    @property
    def batches_per_epoch(self) -> int:
        """Local batches per epoch (the same on every rank)."""
        return self.num_samples // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        used = order[: self.batches_per_epoch * self.batch_size * self.world_size]
        mine = used[self.rank :: self.world_size]
        return mine[self.start_batch * self.batch_size :]

    def __iter__(self) -> Iterator[int] | Iterator[EpochKey]:
        if self.epoch_keys:
            epoch = self.epoch
            return iter([EpochKey(epoch, i) for i in self.indices()])
        return iter(self.indices())

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size
