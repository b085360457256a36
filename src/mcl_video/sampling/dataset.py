"""The MCL pretraining dataset: three motion-focused tubelets per video, four augmented views.

One item: clips c0, c1, c2 from :class:`MotionFocusedSampler` (or uniform), c0
augmented twice (``q``, ``k0``), c1 and c2 once (``k1``, ``k2``), each view with its own
motion-focused crop, plus the query's motion-alignment target (cropped and flipped like ``q``).

Every random choice of an item comes from ``numpy.random.default_rng([seed, epoch, index])``, so a
run is reproducible with any number of DataLoader workers; the choices are made by :meth:`plan`
without decoding, then :meth:`__getitem__` decodes the union of the three clips' frames with one
``read_clip`` call and applies the geometric part (crop, resize, flip). The photometric part (colour
jitter, grayscale, blur, normalisation) is drawn here too but applied to the whole batch on the training
device: :func:`~mcl_video.sampling.photometric.augment_batch` (the training loop calls it after the
transfer; so must anything else that feeds these items to a model).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mcl_video.data.discovery import video_id
from mcl_video.data.video import VideoReadError, read_clip
from mcl_video.errors import DataError
from mcl_video.sampling.augment import AugmentParams, ClipAugment
from mcl_video.sampling.photometric import PHOTOMETRIC_KEY, photometric_params
from mcl_video.sampling.spatial import CropBox, MotionFocusedCrop, RandomResizedCropBox
from mcl_video.sampling.temporal import (
    ClipDraw,
    MotionFocusedSampler,
    UniformSampler,
    clip_frame_indices,
)

log = logging.getLogger(__name__)


class DatasetError(DataError, ValueError):
    """The videos and the motion cache cannot make a training set (the message says why)."""


VIEWS = ("q", "k0", "k1", "k2")
VIEW_CLIP = (0, 0, 1, 2)  # which clip each view augments


@dataclass
class PretrainSamplingConfig:
    """Settings of :class:`MCLPretrainDataset` (defaults: the release's sampling, 112 px input)."""

    clip_len: int = 16
    stride: int = 2
    size: int = 112
    motion_sampling: bool = True  # False: UniformSampler
    motion_crop: bool = True  # False: RandomResizedCropBox
    motion_prob: float = 0.7
    top_fraction: float = 0.5  # of each half's starts, by clip score
    min_frames: int | None = None  # None: 2 * clip_len * stride
    drop_short: bool = True  # drop videos with < min_frames raw frames (the release, for training)
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    crop_tries: int = 40
    crop_size_draws: int = 20
    crop_top_fraction: float = 0.1
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_p: float = 0.5
    flip_p: float = 0.5
    colour: bool = True
    resize_short: int | None = None  # decode at this short side (crops are rescaled); None: native
    seed: int = 0
    max_retries: int = 20  # replacement videos tried for one item before giving up


@dataclass
class SamplePlan:
    """Every random choice of one item (no pixels): which video, clips, crops and augmentations."""

    video_index: int
    video_id: str
    path: str
    frame_hw: tuple[int, int]
    draw: ClipDraw
    indices: tuple[np.ndarray, np.ndarray, np.ndarray]  # raw frame indices of c0, c1, c2
    crops: tuple[CropBox, ...]  # q, k0, k1, k2 in source pixels
    params: tuple[AugmentParams, ...]
    maps: tuple[np.ndarray, ...] = field(default=())  # clip-mean 7x7 motion maps of c0, c1, c2
    motion: object = field(default=None, repr=False)  # the VideoMotion the plan was drawn from


def _as_config(config) -> PretrainSamplingConfig:
    if config is None:
        return PretrainSamplingConfig()
    if isinstance(config, PretrainSamplingConfig):
        return config
    if isinstance(config, dict):
        names = set(PretrainSamplingConfig.__dataclass_fields__)
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"sampling/dataset.py: unknown sampling option(s) {unknown}; "
                             f"known: {', '.join(sorted(names))}")
        return PretrainSamplingConfig(**config)
    raise TypeError(f"sampling/dataset.py: config must be a PretrainSamplingConfig or dict, got {config!r}")


class MCLPretrainDataset(Dataset):
    """Items: ``q, k0, k1, k2`` uint8 ``C x T x size x size`` (cropped, resized, flipped),
    ``photometric`` ``{view: parameters}`` (for :func:`~mcl_video.sampling.photometric.augment_batch`,
    which turns the views into normalised floats), ``target`` float ``T' x H' x W'``, ``order`` long,
    ``index`` long (video index), ``video_id`` str, ``skipped`` long (unreadable videos replaced to make
    this item; the training loop counts them in ``videos_skipped``).

    Only a :class:`VideoReadError` (a missing, unreadable or corrupt video) is replaced by another
    video; any other exception is a bug and propagates.

    Args:
        video_root: folder the records' paths are relative to.
        records: ``VideoRecord``s (anything with ``.path``) or relative paths.
        cache: a ``MotionCache`` (``get(video_id) -> VideoMotion``, ``video_id in cache``).
        config: :class:`PretrainSamplingConfig` or a dict of its fields.
        target_grid: ``(T', H', W')`` of the backbone's alignment layer.
    """

    def __init__(self, video_root, records: Sequence, cache, config=None,
                 target_grid: tuple[int, int, int] = (4, 7, 7)) -> None:
        self.root = Path(video_root)
        self.cache = cache
        self.config = cfg = _as_config(config)
        self.target_grid = tuple(int(g) for g in target_grid)
        self.epoch = 0
        self.failures: dict[str, str] = {}
        self._check_cache_settings()
        if cfg.motion_sampling:
            self.sampler = MotionFocusedSampler(cfg.clip_len, cfg.stride, cfg.motion_prob,
                                                cfg.top_fraction, cfg.min_frames)
        else:
            self.sampler = UniformSampler(cfg.clip_len, cfg.stride, cfg.min_frames)
        if cfg.motion_crop:
            self.cropper = MotionFocusedCrop(cfg.crop_scale, cfg.crop_ratio, cfg.crop_tries,
                                             cfg.crop_size_draws, cfg.crop_top_fraction)
        else:
            self.cropper = RandomResizedCropBox(cfg.crop_scale, cfg.crop_ratio, cfg.crop_size_draws)
        self.augment = ClipAugment(cfg.size, cfg.jitter, cfg.jitter_p, cfg.grayscale_p,
                                   cfg.blur_sigma, cfg.blur_p, cfg.flip_p, cfg.colour)
        self.videos = self._select(records)
        if not self.videos:
            raise DatasetError(f"no usable training videos under {self.root} "
                               "(all missing from the motion cache or too short); run `mcl prepare`")

    def _check_cache_settings(self) -> None:
        cfg = self.config
        got = (getattr(self.cache, "clip_len", cfg.clip_len), getattr(self.cache, "stride", cfg.stride))
        if cfg.motion_sampling and got != (cfg.clip_len, cfg.stride):
            raise DatasetError(
                f"the motion cache scores {got[0]}x{got[1]} clips but the dataset "
                f"samples {cfg.clip_len}x{cfg.stride}; rebuild the cache with matching --clip-len/"
                "--stride or set clip_len/stride to the cache's")

    def _select(self, records: Sequence) -> list[tuple[str, str, int]]:
        """``(relative path, video id, num_frames)`` of the usable videos; logs what it drops."""
        keep, missing, short = [], [], 0
        for rec in records:
            rel = str(getattr(rec, "path", rec))
            vid = video_id(rel)
            if vid not in self.cache:
                missing.append(rel)
                continue
            num_frames = self._num_frames(vid)
            if self.config.drop_short and not self.sampler.has_halves(num_frames):
                short += 1
                continue
            keep.append((rel, vid, num_frames))
        if missing:
            log.warning("%d video(s) are not in the motion cache and are skipped (first: %s); run "
                        "`mcl prepare` on %s", len(missing), missing[0], self.root)
        if short:
            log.warning("%d video(s) shorter than %d raw frames are dropped for training (two clip spans)",
                        short, self.sampler.min_frames)
        self.num_missing, self.num_short = len(missing), short
        return keep

    def _num_frames(self, video_id: str) -> int:
        fn = getattr(self.cache, "num_frames", None)
        return int(fn(video_id)) if callable(fn) else int(self.cache.get(video_id).num_frames)

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (call before each epoch; workers see it when forked)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The item's generator: a function of ``(seed, epoch, index)`` only."""
        return np.random.default_rng([self.config.seed, self.epoch, int(index)])

    def plan(self, index: int, rng: np.random.Generator | None = None) -> SamplePlan:
        """Draw clips, crops and augmentation parameters for video ``index`` (nothing decoded)."""
        rng = self.rng(index) if rng is None else rng
        rel, vid, _ = self.videos[index]
        motion = self.cache.get(vid)
        cfg = self.config
        draw = self.sampler.sample(motion.num_frames, motion.clip_scores, rng)
        indices = tuple(clip_frame_indices(s, cfg.clip_len, cfg.stride) for s in draw.starts)
        last = max(int(motion.num_frames) - 1, 0)
        maps = tuple(np.asarray(motion.frame_maps)[np.minimum(i, last)].mean(axis=0) for i in indices)
        frame_hw = tuple(int(x) for x in motion.frame_hw)
        crops, params = [], []
        for clip in VIEW_CLIP:
            crop = self.cropper.sample(frame_hw, maps[clip], rng)
            crops.append(crop)
            params.append(self.augment.draw(crop, rng))
        return SamplePlan(index, vid, str(self.root / rel), frame_hw, draw, indices, tuple(crops),
                          tuple(params), maps, motion)

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        current = int(index)
        for skipped in range(self.config.max_retries + 1):
            try:
                item = self.load(self.plan(current, rng))
            except VideoReadError as err:  # only unreadable videos are replaced; bugs propagate
                path = str(self.root / self.videos[current][0])
                reason = str(err)
                self.failures[path] = reason
                log.warning("skipping %s (%s); using another video (%d failure(s) so far)",
                            path, reason, len(self.failures))
                current = int(rng.integers(len(self)))
                continue
            item["skipped"] = torch.tensor(skipped, dtype=torch.long)
            return item
        raise VideoReadError(f"{self.config.max_retries + 1} videos in a row could not "
                             f"be read (last: {path}: {reason}); check the videos under {self.root}")

    def load(self, plan: SamplePlan) -> dict:
        """Decode the plan's clips and build the item dict (geometric augmentation only)."""

        T = self.config.clip_len
        frames = read_clip(plan.path, np.concatenate(plan.indices), self.config.resize_short)
        clips = frames.permute(0, 3, 1, 2).split(T)  # 3 x (T x C x H x W) uint8
        item: dict = {PHOTOMETRIC_KEY: {}}
        for name, clip, p in zip(VIEWS, VIEW_CLIP, plan.params, strict=True):
            p = _rescale_params(p, plan.frame_hw, tuple(clips[clip].shape[-2:]))
            item[name] = self.augment.geometric(clips[clip], p).permute(1, 0, 2, 3).contiguous()
            item[PHOTOMETRIC_KEY][name] = photometric_params(p)
        item["target"] = self.query_target(plan)
        item["order"] = torch.tensor(plan.draw.order, dtype=torch.long)
        item["index"] = torch.tensor(plan.video_index, dtype=torch.long)
        item["video_id"] = plan.video_id
        return item

    def query_target(self, plan: SamplePlan) -> torch.Tensor:
        """The query's alignment target ``T' x H' x W'``: cropped like q, flipped with q."""
        motion = plan.motion if plan.motion is not None else self.cache.get(plan.video_id)
        target = np.asarray(motion.alignment_target(plan.indices[0], plan.crops[0].as_tuple(),
                                                    self.target_grid), dtype=np.float32)
        if plan.params[0].flip:
            # a copy: np.ascontiguousarray keeps the negative stride when the flipped axis has length 1
            # (a 1-wide grid), which torch.from_numpy refuses
            target = target[..., ::-1].copy()
        return torch.from_numpy(np.ascontiguousarray(target))


def _rescale_params(params: AugmentParams, source_hw, decoded_hw) -> AugmentParams:
    """Map the crop from the cache's source pixels to the decoded frame size (``resize_short``)."""
    if tuple(source_hw) == tuple(decoded_hw):
        return params
    sy, sx = decoded_hw[0] / source_hw[0], decoded_hw[1] / source_hw[1]
    c = params.crop
    h = min(max(1, round(c.height * sy)), decoded_hw[0])
    w = min(max(1, round(c.width * sx)), decoded_hw[1])
    top = min(round(c.top * sy), decoded_hw[0] - h)
    left = min(round(c.left * sx), decoded_hw[1] - w)
    return AugmentParams(CropBox(top, left, h, w), params.jitter, params.grayscale,
                         params.blur_sigma, params.flip)
