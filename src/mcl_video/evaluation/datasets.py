"""Clips for evaluation: N uniformly spaced clips per video, centre or three spatial crops (the release's
linear probe averages the features of 20 uniformly spaced centre-cropped clips per video).

Items are dicts ``{"clips": V x 3 x T x S x S float, "label": int, "index": int, "video_id": str}``
with ``V = num_clips x num_crops`` views, clip-major (all crops of clip 0, then clip 1, ...).
A video that cannot be read is logged and its item is ``None``; :func:`collate_videos` drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mcl_video.data import VideoReadError, read_clip, read_video_info
from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

CROPS = {"center": 1, "three": 3, "random": 1}
# ``short_side="native"`` (the release's linear-probe protocol): frames whose short side is already in
# this range are used as decoded (UCF101/HMDB51 are 240 px, Kinetics is usually stored at 256); any
# other video is resized to NATIVE_FALLBACK first, so the crop never lands on 1080p or 128-px frames
NATIVE_SHORT_SIDES = (240, 256)
NATIVE_FALLBACK = 256


def clip_indices(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
    """Frame indices of ``num_clips`` uniformly spaced clips: ``num_clips x clip_len`` int64.

    A clip spans ``(clip_len - 1) * stride + 1`` frames; starts are ``linspace(0, num_frames - span,
    num_clips)`` rounded to integers. A video shorter than one span gets every clip at frame 0 with the
    indices past the end replaced by the last frame (the release pads by repeating the last frame).
    """
    if num_frames < 1 or clip_len < 1 or stride < 1 or num_clips < 1:
        raise ValueError(
            f"clip_indices: need positive sizes, got num_frames={num_frames}, clip_len={clip_len}, "
            f"stride={stride}, num_clips={num_clips}"
        )
    span = (clip_len - 1) * stride + 1
    starts = np.rint(np.linspace(0, max(0, num_frames - span), num_clips)).astype(np.int64)
    idx = starts[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * stride
    return np.minimum(idx, num_frames - 1)


def crop_offsets(height: int, width: int, size: int, crop: str) -> list[tuple[int, int]]:
    """``(top, left)`` of the ``size x size`` crops: ``center`` -> 1 crop; ``three`` -> start, centre
    and end of the long side (centred on the short side)."""
    if height < size or width < size:
        raise ValueError(f"crop_offsets: frame {height}x{width} is smaller than the crop {size}")
    top, left = (height - size) // 2, (width - size) // 2
    if crop == "center":
        return [(top, left)]
    if crop != "three":
        raise ValueError(f"crop_offsets: crop must be 'center' or 'three', got {crop!r}")
    if width >= height:
        return [(top, 0), (top, left), (top, width - size)]
    return [(0, left), (top, left), (height - size, left)]


def normalize_clip(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``T x H x W x 3`` -> ImageNet-normalised float ``3 x T x H x W``."""
    x = frames.permute(3, 0, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (x - mean) / std


class EvalClipDataset(torch.utils.data.Dataset):
    """N uniformly spaced clips per video for feature extraction and fine-tune testing.

    Args:
        video_root: folder the records' ``path`` is relative to.
        records: ``VideoRecord``-like objects with ``path`` and ``label``.
        clip_len, stride: frames per clip and the step between them.
        num_clips: clips per video (uniformly spaced).
        size: crop side; ``short_side`` (default ``size``) is the short side after resizing, or
            ``"native"``: no resize when the video's short side is in ``NATIVE_SHORT_SIDES``
            (else resized to ``NATIVE_FALLBACK``), see :func:`native_resize`.
        crop: ``"center"`` (1 crop), ``"three"`` (3 crops along the long side) or ``"random"``
            (training for fine-tuning: one clip at a random start, a random crop position and a
            random horizontal flip; ``num_clips`` is ignored). Every random draw of item ``i`` comes
            from ``(seed, epoch, i)`` (see :meth:`set_epoch`), so a run resumed mid-epoch, with any
            number of loader workers, sees the same clips.
    """

    def __init__(
        self,
        video_root: str | Path,
        records: Sequence,
        clip_len: int = 16,
        stride: int = 2,
        num_clips: int = 20,
        size: int = 112,
        crop: str = "center",
        short_side: int | str | None = None,
        seed: int = 0,
    ):
        if crop not in CROPS:
            raise ValueError(f"EvalClipDataset: crop must be one of {sorted(CROPS)}, got {crop!r}")
        self.video_root = Path(video_root)
        self.records = list(records)
        self.clip_len, self.stride, self.size, self.crop = clip_len, stride, size, crop
        self.num_clips = 1 if crop == "random" else num_clips
        self.seed, self.epoch = seed, 0
        self.short_side = short_side or size
        if self.short_side == "native":
            if size > NATIVE_SHORT_SIDES[0]:
                raise ValueError(f"EvalClipDataset: crop {size} > native short side {NATIVE_SHORT_SIDES[0]}")
        elif not isinstance(self.short_side, int) or self.short_side < size:
            raise ValueError(
                f"EvalClipDataset: short_side must be 'native' or an int >= the crop size {size}, "
                f"got {self.short_side!r}"
            )

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose random draws ``crop="random"`` items use."""
        self.epoch = int(epoch)

    @property
    def views_per_video(self) -> int:
        return self.num_clips * CROPS[self.crop]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict | None:
        rec = self.records[i]
        path = self.video_root / rec.path
        try:
            info = read_video_info(path)
            rng = np.random.default_rng((self.seed, self.epoch, i))
            idx = self._indices(info.num_frames, rng)
            resize = self.short_side
            if resize == "native":
                resize = native_resize(info.height, info.width)
            frames = read_clip(path, idx.reshape(-1), resize_short=resize)
        except (VideoReadError, OSError) as err:
            log.warning("skipping unreadable video %s: %s", path, err)
            return None
        frames = frames.view(len(idx), self.clip_len, *frames.shape[1:])  # clips x T x H x W x 3
        views = [self._views(clip, rng) for clip in frames]
        return {
            "clips": torch.stack([v for clip_views in views for v in clip_views]),
            "label": int(rec.label),
            "index": int(i),
            "video_id": str(rec.path),
        }

    def _indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        if self.crop != "random":
            return clip_indices(num_frames, self.clip_len, self.stride, self.num_clips)
        span = (self.clip_len - 1) * self.stride + 1
        start = int(rng.integers(0, max(1, num_frames - span + 1)))
        idx = start + np.arange(self.clip_len, dtype=np.int64)[None, :] * self.stride
        return np.minimum(idx, num_frames - 1)

    def _views(self, clip: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
        """uint8 ``T x H x W x 3`` -> list of normalised ``3 x T x S x S`` crops."""
        h, w = clip.shape[1:3]
        s = self.size
        if self.crop == "random":
            top = int(rng.integers(0, h - s + 1))
            left = int(rng.integers(0, w - s + 1))
            view = normalize_clip(clip[:, top : top + s, left : left + s])
            return [view.flip(-1) if rng.random() < 0.5 else view]
        return [normalize_clip(clip[:, t : t + s, lf : lf + s]) for t, lf in crop_offsets(h, w, s, self.crop)]


def native_resize(height: int, width: int) -> int | None:
    """``resize_short`` for ``short_side="native"``: ``None`` (frames as decoded) when the short side
    is in ``NATIVE_SHORT_SIDES``, else ``NATIVE_FALLBACK``."""
    lo, hi = NATIVE_SHORT_SIDES
    return None if lo <= min(height, width) <= hi else NATIVE_FALLBACK


def collate_videos(batch: list[dict | None]) -> dict | None:
    """Stack items, dropping unreadable videos (``None``).

    Returns ``{"clips": B x V x 3 x T x S x S, "label": B long, "index": B long, "video_id": [str]}``,
    or ``None`` when every video of the batch was unreadable.
    """
    items = [b for b in batch if b is not None]
    if not items:
        return None
    return {
        "clips": torch.stack([b["clips"] for b in items]),
        "label": torch.tensor([b["label"] for b in items], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in items], dtype=torch.long),
        "video_id": [b["video_id"] for b in items],
    }
