"""Distributed helpers for the encoder pair: all-gather of keys and shuffle-BN across processes.

The gathers are identity without an initialised process group, i.e. at world size 1 (the shuffle then
permutes the local batch). ``is_initialized``,
``world_size`` and ``rank`` are the package's one answer to "is this a distributed run" (training and
evaluation use them too). They assume
every rank has the same batch size (DDP with ``drop_last=True``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """True when a process group is running (the one place that asks torch.distributed)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """``B x ...`` on each rank -> ``(world * B) x ...`` in rank order (no gradient)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def batch_shuffle(x: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle-BN, step 1: gather the batch from all ranks, permute it with one permutation drawn on
    rank 0 (from ``generator``, else the global generator of ``x``'s device), and hand each rank its
    slice. Returns ``(x_shuffled B x ..., idx_unshuffle)``. At world size 1 the local batch is permuted
    (the groups of a grouped BatchNorm then receive shuffled samples, as the ranks would)."""
    b = x.shape[0]
    gathered = concat_all_gather(x)
    device = x.device if generator is None else generator.device
    perm = torch.randperm(gathered.shape[0], device=device, generator=generator).to(x.device)
    if world_size() > 1:
        dist.broadcast(perm, src=0)
    idx_unshuffle = torch.argsort(perm)
    mine = perm.view(world_size(), b)[rank()]
    return gathered[mine], idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor | None) -> torch.Tensor:
    """Shuffle-BN, step 2: undo :func:`batch_shuffle` on the encoder's output ``B x ...`` (None: as is)."""
    if idx_unshuffle is None:
        return x
    b = x.shape[0]
    gathered = concat_all_gather(x)
    mine = idx_unshuffle.view(world_size(), b)[rank()]
    return gathered[mine]
