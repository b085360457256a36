"""Item keys that carry their epoch: what lets DataLoader workers live across epochs.

A dataset whose random draws are a function of ``(seed, epoch, index)`` only needs the epoch with each
index. :class:`~mcl_video.training.distributed.ResumableShardSampler` hands out :class:`EpochKey` pairs
when its ``epoch_keys`` is on, so a worker process started in epoch 0 draws epoch 5's items exactly as
a fresh one would; the dataset's own ``set_epoch`` (what a forked worker copied) is then only the
default for plain integer indices. A dataset declares that it understands the pairs with the class
attribute ``accepts_epoch_keys = True``.
"""

from __future__ import annotations

from typing import NamedTuple


class EpochKey(NamedTuple):
    epoch: int
    index: int


def split_key(key, default_epoch: int) -> tuple[int, int]:
    """``(epoch, index)`` of an :class:`EpochKey` (or any pair); a plain index gets ``default_epoch``."""
    if isinstance(key, tuple):
        epoch, index = key
        return int(epoch), int(index)
    return int(default_epoch), int(key)


def accepts_epoch_keys(dataset) -> bool:
    return bool(getattr(dataset, "accepts_epoch_keys", False))
