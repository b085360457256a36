"""The per-epoch DataLoader of the training loops, with workers that live across epochs when they can.

``build_epoch_loader(dataset, sampler, epoch, start_batch, ...)`` positions the
:class:`~mcl_video.training.distributed.ResumableShardSampler` (``set_epoch(epoch, start_batch)``) and
returns the loader to iterate for that epoch:

- a dataset with ``accepts_epoch_keys = True`` (its draws are a function of ``(seed, epoch, index)``,
  e.g. ``MCLPretrainDataset``, ``EvalClipDataset``) gets ``(epoch, index)`` keys from the sampler, so with
  ``num_workers > 0`` one ``DataLoader(persistent_workers=True)`` serves the whole run: the same object
  is returned for every epoch, its worker processes are started once, and every batch equals the one a
  fresh loader would have produced (a resumed run included, since the keys come from the sampler's
  position);
- any other dataset gets plain indices, ``dataset.set_epoch(epoch)`` and a new loader per epoch, whose
  workers are forked after ``set_epoch`` and so see it.

The persistent loader is kept on the sampler (one per sampler: a run owns one); it refers back to the
sampler only weakly, so when the run drops its sampler the loader and its worker processes go too.
:func:`close_epoch_loader` shuts the workers down at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from mcl_video.sampling.keys import accepts_epoch_keys
from mcl_video.training.distributed import ResumableShardSampler

_ATTR = "_persistent_loader"


class _SamplerView(Sampler):
    """Iterates the run's sampler through a weak reference (no cycle sampler -> loader -> sampler)."""

    def __init__(self, sampler: ResumableShardSampler):
        self._ref = weakref.ref(sampler)

    def _sampler(self) -> ResumableShardSampler:
        sampler = self._ref()
        if sampler is None:
            raise RuntimeError("the sampler of this persistent loader no longer exists")
        return sampler

    def __iter__(self) -> Iterator:
        return iter(self._sampler())

    def __len__(self) -> int:
        return len(self._sampler())


def build_epoch_loader(dataset, sampler: ResumableShardSampler, epoch: int, start_batch: int = 0, *,
                       batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                       collate_fn: Callable | None = None, worker_init_fn: Callable | None = None,
                       seed: int = 0, persistent: bool = True, prefetch_factor: int | None = None
                       ) -> DataLoader:
    """The loader for ``epoch`` from local batch ``start_batch`` on (see the module docstring).

    ``seed`` seeds the loader's own generator (worker base seeds; building a loader never consumes
    the global RNG). ``persistent=False`` forces a fresh loader per epoch even for a key-aware dataset.
    """
    sampler.set_epoch(epoch, start_batch=start_batch)
    if hasattr(dataset, "set_epoch"):  # the default epoch of plain indices, and of the main process
        dataset.set_epoch(epoch)
    keyed = accepts_epoch_keys(dataset)
    sampler.epoch_keys = keyed
    extra = {"prefetch_factor": prefetch_factor} if num_workers and prefetch_factor else {}
    settings = (id(dataset), batch_size, num_workers, pin_memory, collate_fn, worker_init_fn,
                prefetch_factor)
    if keyed and persistent and num_workers > 0:
        cached = getattr(sampler, _ATTR, None)
        if cached is not None and cached[0] == settings:
            return cached[1]
        close_epoch_loader(sampler)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=_SamplerView(sampler), drop_last=True,
                            num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory,
                            worker_init_fn=worker_init_fn, persistent_workers=True,
                            generator=torch.Generator().manual_seed(seed), **extra)
        setattr(sampler, _ATTR, (settings, loader))
        return loader
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                      num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory,
                      worker_init_fn=worker_init_fn, persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed), **extra)


def close_epoch_loader(sampler: ResumableShardSampler) -> None:
    """Shut down the persistent workers kept for ``sampler`` (if any); the next call starts new ones."""
    cached = sampler.__dict__.pop(_ATTR, None)
    if cached is None:
        return
    iterator = getattr(cached[1], "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    cached[1]._iterator = None
