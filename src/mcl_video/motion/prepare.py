"""Build a motion cache: flow -> motion-boundary maps -> ``videos/<id>.npz`` (see ``cache.py``).

Flow is computed streaming over the decoded frames (``FlowEstimator.stream``) at a short side of
``resize_short`` pixels (videos already smaller are not upscaled); only the last
``max(clip_len * stride, frame_window)`` flow frames' derivatives are held in memory, so long or
large videos do not blow memory. A rerun skips videos whose entry exists and validates (a corrupt entry
is prepared again); a failing video is recorded in ``failed/`` with its reason and every other video is
still prepared. The border (``settings.border``, "auto" by default) is resolved at the flow's
resolution and recorded in each entry's info.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mcl_video.motion.cache import (
    REPRESENTATIONS,
    CacheSettings,
    check_entry,
    field_hw,
    init_cache,
    num_starts,
    quantise,
    video_id_for,
    write_entry,
    write_failure,
)
from mcl_video.motion.maps import (
    block_means,
    boundary_derivatives,
    boundary_magnitude,
    resolve_border,
    zero_border,
)

log = logging.getLogger(__name__)


class _MotionAccumulator:
    """Streams flow frames in; emits frame maps, clip scores and reduced fields (module docstring)."""

    def __init__(self, settings: CacheSettings, frame_hw: tuple[int, int]) -> None:
        self.s = settings
        self.hw = frame_hw
        self.field_hw = field_hw(frame_hw, settings.field_short)
        self.border = resolve_border(settings.border, frame_hw)
        self.keep = max(settings.span, settings.frame_window)
        self.buffer: deque[np.ndarray] = deque()  # derivatives 4 x H x W (float32) of the last flows
        self.first = 0  # flow index of buffer[0]
        self.clip_sum = np.zeros((4, *frame_hw), np.float64)  # sum over flows [next_start, count)
        self.count = 0  # flow frames pushed
        self.frame_sum = np.zeros((4, *frame_hw), np.float64)  # sum over flows [frame_lo, frame_hi)
        self.frame_lo = self.frame_hi = 0
        self.frame_maps: list[np.ndarray] = []
        self.clip_scores: list[float] = []
        self.fields: list[np.ndarray] = []
        self.scales: list[np.ndarray] = []

    def _zeroed_map(self, summed: np.ndarray) -> np.ndarray:
        return zero_border(boundary_magnitude(summed.astype(np.float32)) / 2.0, self.border)

    def _window_sum(self, lo: int, hi: int) -> np.ndarray:
        parts = [self.buffer[i - self.first] for i in range(max(lo, self.first), hi)]
        return np.sum(parts, axis=0, dtype=np.float64)

    def _emit_frame_map(self, t: int) -> None:
        """Frame map of raw frame t: window ``[t - w/2, t + w/2)`` of flows, kept as a running sum."""
        half = self.s.frame_window // 2
        lo, hi = max(0, t - half), min(self.count, t - half + self.s.frame_window)
        while self.frame_hi < hi:
            self.frame_sum += self.buffer[self.frame_hi - self.first]
            self.frame_hi += 1
        while self.frame_lo < lo:
            self.frame_sum -= self.buffer[self.frame_lo - self.first]
            self.frame_lo += 1
        self.frame_maps.append(block_means(self._zeroed_map(self.frame_sum), self.s.grid))

    def _reduce(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> None:
        """Area-average the stored fields to ``field_hw`` (cv2 INTER_AREA = exact area means) and quantise."""
        full = d if self.s.representation == "derivatives" else np.stack([u, v])
        h, w = self.field_hw
        small = np.stack([cv2.resize(np.ascontiguousarray(x, dtype=np.float32), (w, h),
                                     interpolation=cv2.INTER_AREA) for x in full])
        q, scales = quantise(small)
        self.fields.append(q)
        self.scales.append(scales)

    def push(self, u: np.ndarray, v: np.ndarray) -> None:
        """Add flow frame ``count`` (``u``, ``v``: ``H x W`` pixels)."""
        d = boundary_derivatives(u[None], v[None])[:, 0]
        self._reduce(u, v, d)
        self.buffer.append(d.astype(np.float32))
        self.clip_sum += d
        self.count += 1
        span = self.s.span
        if self.count > span:  # drop flow count-1-span from the clip window
            self.clip_sum -= self.buffer[self.count - 1 - span - self.first]
        if self.count >= span:
            self.clip_scores.append(float(self._zeroed_map(self.clip_sum).mean()))
        ready = self.count - (self.s.frame_window - self.s.frame_window // 2)  # frame whose window is full
        while len(self.frame_maps) <= ready:
            self._emit_frame_map(len(self.frame_maps))
        while len(self.buffer) > self.keep and self.first < self.frame_lo:
            self.buffer.popleft()
            self.first += 1

    def finish(self) -> tuple[dict[str, np.ndarray], int]:
        """Emit what is left at the end of the video -> (arrays, num_frames)."""
        n = self.count + 1
        for s in range(len(self.clip_scores), num_starts(n, self.s.span)):
            window = self._window_sum(s, min(self.count, s + self.s.span))
            self.clip_scores.append(float(self._zeroed_map(window).mean()) if self.count else 0.0)
        while len(self.frame_maps) < n:
            t = len(self.frame_maps)
            if self.count:
                self._emit_frame_map(t)
            else:
                self.frame_maps.append(np.zeros(self.s.grid))
        k = REPRESENTATIONS[self.s.representation]
        fields = np.stack(self.fields, axis=1) if self.fields else np.zeros((k, 0, *self.field_hw), np.int8)
        scales = np.stack(self.scales, axis=1) if self.scales else np.zeros((k, 0), np.float32)
        arrays = {"frame_maps": np.stack(self.frame_maps).astype(np.float32),
                  "clip_scores": np.asarray(self.clip_scores, np.float32), "fields": fields,
                  "scales": scales.astype(np.float32)}
        return arrays, n


def compute_video_motion(path: str | os.PathLike, settings: CacheSettings,
                         threads: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Motion data of one video -> (arrays, info) as stored in the cache."""
    from mcl_video.data import iter_frames, read_video_info
    from mcl_video.motion.flow import FlowEstimator

    info = read_video_info(path)
    short = min(info.height, info.width)
    resize = settings.resize_short if settings.resize_short and short > settings.resize_short else None
    estimator = FlowEstimator(settings.flow_backend, threads=threads, **settings.flow_options)
    acc = None
    for u, v in estimator.stream(iter_frames(path, resize_short=resize)):
        if acc is None:
            acc = _MotionAccumulator(settings, u.shape)
        acc.push(u, v)
    if acc is None:  # a single frame: no flow at all
        acc = _MotionAccumulator(settings, (info.height, info.width))
    arrays, n = acc.finish()
    meta = {"num_frames": n, "frame_hw": [info.height, info.width], "flow_hw": [int(x) for x in acc.hw],
            "resize_short": resize, "border": acc.border,
            "representation": settings.representation}
    return arrays, meta


@dataclass
class PrepareSummary:
    """Counts of a ``prepare`` run; ``failed`` maps video path -> reason."""

    total: int = 0
    prepared: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        rate = self.prepared / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.total} videos: {self.prepared} prepared, {self.skipped} already done, "
                f"{len(self.failed)} failed; {self.frames} frames in {self.seconds:.1f} s "
                f"({rate:.2f} videos/s, {self.frames / max(self.seconds, 1e-9):.1f} frames/s)")


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/N"`` (0 <= i < N) -> ``(i, N)``; None -> ``(0, 1)``."""
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"shard must look like i/N (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: need N >= 1 and 0 <= i < N (shards are numbered from 0)")
    return i, n


def select_shard(video_ids: list[str], shard: str | tuple[int, int] | None) -> list[str]:
    """Deterministic split: shard i of N takes every N-th id (from the i-th) of the sorted ids."""
    i, n = parse_shard(shard)
    return sorted(video_ids)[i::n]


def list_videos(root: str | os.PathLike, dataset: str | None = None, split: int = 1,
                video_root: str | os.PathLike | None = None) -> tuple[Path, dict[str, Path]]:
    """Videos to prepare -> ``(video root, {video_id: path})``.

    Without ``dataset``: every video under ``root`` (recursive). With ``dataset``: ``root`` is the
    annotation folder and the train and test lists of ``split`` are taken, under ``video_root``.
    """
    from mcl_video.data import find_videos

    if dataset is None:
        base = Path(root)
        return base, {video_id_for(p, base): p for p in find_videos(base)}
    from mcl_video.data import read_split

    if video_root is None:
        raise ValueError("--dataset needs --video-root DIR (the folder the annotation paths are relative to)")
    base = Path(video_root)
    paths: dict[str, Path] = {}
    subsets = ("train", "val", "test") if dataset == "kinetics400" else ("train", "test")
    for subset in subsets:
        try:
            records = read_split(dataset, root, split=split, subset=subset, video_root=base)
        except FileNotFoundError:
            if subset == "train":
                raise
            log.warning("%s: no %s list in %s, preparing the others", dataset, subset, root)
            continue
        for rec in records:
            p = base / rec.path
            paths[video_id_for(p, base)] = p
    return base, paths


def _init_worker(threads: int) -> None:
    import cv2

    cv2.setNumThreads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass


def _prepare_one(out: str, video_id: str, path: str, settings: CacheSettings,
                 threads: int | None) -> tuple[str, int, str | None]:
    """Worker: compute and write one entry -> (video_id, frames, error reason or None)."""
    try:
        arrays, info = compute_video_motion(path, settings, threads=threads)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # any per-video failure is recorded; the run goes on
        reason = f"{type(err).__name__}: {err}"
        write_failure(out, video_id, path, reason)
        return video_id, 0, reason
    write_entry(out, video_id, arrays, info)
    return video_id, info["num_frames"], None


def _iter_results(out: Path, todo: dict[str, Path], settings: CacheSettings, workers: int) -> Iterable:
    """Yield ``(video_id, frames, reason)`` as videos finish (in-process when ``workers <= 1``)."""
    if workers <= 1:
        for vid, path in todo.items():
            yield _prepare_one(str(out), vid, str(path), settings, None)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: a forked child of a process whose OpenMP/OpenCV thread pools already ran can hang
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(_prepare_one, str(out), vid, str(path), settings, threads)
                   for vid, path in todo.items()]
        for fut in as_completed(futures):
            yield fut.result()


def prepare(root: str | os.PathLike, out: str | os.PathLike, settings: CacheSettings | None = None, *,
            workers: int = 1, shard: str | tuple[int, int] | None = None, dataset: str | None = None,
            split: int = 1, video_root: str | os.PathLike | None = None,
            progress: bool = True) -> PrepareSummary:
    """Prepare the motion cache ``out`` for the videos of ``root`` (see :func:`list_videos`).

    Resumable: videos with a valid entry are skipped (a corrupt entry is prepared again).
    ``shard="i/N"`` prepares only that share of the videos
    (every video lands in exactly one of the N shards). Failures are logged, recorded in ``out/failed``
    and listed in the returned summary; they do not stop the run.
    """
    from tqdm import tqdm

    settings = settings or CacheSettings()
    out = Path(out)
    init_cache(out, settings)
    _, videos = list_videos(root, dataset, split, video_root)
    chosen = select_shard(list(videos), shard)
    summary = PrepareSummary(total=len(chosen))
    problems = {vid: check_entry(out, vid, settings) for vid in chosen}
    for vid, why in problems.items():
        if why not in (None, "missing"):
            log.warning("motion cache entry of %s is corrupt (%s): preparing it again", videos[vid], why)
    todo = {vid: videos[vid] for vid in chosen if problems[vid] is not None}
    summary.skipped = len(chosen) - len(todo)
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="video", disable=not progress, dynamic_ncols=True)
    try:
        for vid, frames, reason in _iter_results(out, todo, settings, workers):
            if reason is None:
                summary.prepared += 1
                summary.frames += frames
            else:
                summary.failed[str(videos[vid])] = reason
                log.warning("could not prepare %s: %s", videos[vid], reason)
            bar.update(1)
            elapsed = time.perf_counter() - start
            fps = summary.frames / max(elapsed, 1e-9)
            bar.set_postfix(frames_per_s=f"{fps:.0f}", failed=len(summary.failed))
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary
