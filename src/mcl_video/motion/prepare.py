"""Build a motion cache: flow -> motion-boundary maps -> ``videos/<id>.npz`` (see ``cache.py``).

Flow is computed streaming over the decoded frames (``FlowEstimator.stream``) at a short side of
``resize_short`` pixels (videos already smaller are not upscaled); only the last
``max(clip_len * stride, frame_window) + 1`` flow frames' derivatives are held in memory, so long or
large videos do not blow memory. A rerun skips videos whose entry exists and validates (a corrupt entry
is prepared again); a failing video is recorded in ``failed/`` with its reason and every other video is
still prepared. The border (``settings.border``, "auto" by default) is resolved at the flow's
resolution and recorded in each entry's info. With ``workers > 1`` videos go to a pool of spawned
processes (one OpenCV thread each) that end with the parent process, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mcl_video.data import find_videos, iter_frames, read_split, read_video_info, video_id
from mcl_video.data.summary import RunSummary
from mcl_video.errors import DataError
from mcl_video.motion.cache import (
    REPRESENTATIONS,
    CacheSettings,
    check_entry,
    init_cache,
    num_starts,
    quantise,
    write_entry,
    write_failure,
)
from mcl_video.motion.fields import field_hw
from mcl_video.motion.flow import FLOW_BOUND, FlowEstimator, read_flow_folder
from mcl_video.motion.maps import WindowMapper, aligned_planes, prewitt_into, resolve_border

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
FLOW_JPEG = "jpeg"  # settings.flow_backend of a cache whose flow was read from flow JPEGs (--flow-from)


# window sums are running sums (add the new flow frame, subtract the one that leaves) and recomputed from
# the stored frames every _REFRESH flow frames, so float32 rounding cannot build up over a long video
_REFRESH = 64


class _MotionAccumulator:
    """Streams flow frames in; emits frame maps, clip scores and reduced fields (module docstring).

    The derivatives of the last ``max(span, frame_window) + 1`` flow frames live in a float32 ring; the
    clip window and the frame window are running sums over it, so each flow frame costs one Prewitt
    pass, one add and one subtract per window, and one magnitude per emitted map.
    """

    def __init__(self, settings: CacheSettings, frame_hw: tuple[int, int]) -> None:
        self.s = settings
        self.hw = frame_hw
        self.field_hw = field_hw(frame_hw, settings.field_short)
        self.cap = max(settings.span, settings.frame_window) + 1
        self.ring = np.empty((self.cap, 4, *frame_hw), np.float32)  # derivatives of flow i at i % cap
        self.border = resolve_border(settings.border, frame_hw)
        self.mapper = WindowMapper(frame_hw, self.border, settings.grid)
        self.clip_sum = aligned_planes(4, frame_hw)  # sum over flows [count - span, count)
        self.count = 0  # flow frames pushed
        self.frame_sum = aligned_planes(4, frame_hw)  # sum over flows [frame_lo, frame_hi)
        self.frame_lo = self.frame_hi = 0
        self.frame_maps: list[np.ndarray] = []
        self.clip_scores: list[float] = []
        self.fields: list[np.ndarray] = []
        self.scales: list[np.ndarray] = []

    def _flow(self, i: int) -> np.ndarray:
        return self.ring[i % self.cap]

    def _recompute(self, out: np.ndarray, lo: int, hi: int) -> None:
        out.fill(0.0)
        for i in range(lo, hi):
            np.add(out, self._flow(i), out=out)

    def _score(self, summed: np.ndarray) -> float:
        return self.mapper.score(self.mapper.magnitude_aligned(summed))

    def _emit_frame_map(self, t: int) -> None:
        """Frame map of raw frame t: window ``[t - w/2, t + w/2)`` of flows, kept as a running sum."""
        half = self.s.frame_window // 2
        lo, hi = max(0, t - half), min(self.count, t - half + self.s.frame_window)
        while self.frame_hi < hi:
            np.add(self.frame_sum, self._flow(self.frame_hi), out=self.frame_sum)
            self.frame_hi += 1
        while self.frame_lo < lo:
            np.subtract(self.frame_sum, self._flow(self.frame_lo), out=self.frame_sum)
            self.frame_lo += 1
        self.frame_maps.append(self.mapper.grid_map(self.mapper.magnitude_aligned(self.frame_sum)))

    def _reduce(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> None:
        """Area-average the stored fields to ``field_hw`` (cv2 INTER_AREA = exact area means) and quantise."""
        full = d if self.s.representation == "derivatives" else (u, v)
        h, w = self.field_hw
        small = np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in full])
        q, scales = quantise(small)
        self.fields.append(q)
        self.scales.append(scales)

    def push(self, u: np.ndarray, v: np.ndarray) -> None:
        """Add flow frame ``count`` (``u``, ``v``: ``H x W`` pixels)."""
        u = np.ascontiguousarray(u, dtype=np.float32)
        v = np.ascontiguousarray(v, dtype=np.float32)
        d = self._flow(self.count)
        prewitt_into(u, d[0], d[1])
        prewitt_into(v, d[2], d[3])
        self._reduce(u, v, d)
        np.add(self.clip_sum, d, out=self.clip_sum)
        self.count += 1
        span = self.s.span
        if self.count > span:  # drop flow count-1-span from the clip window
            np.subtract(self.clip_sum, self._flow(self.count - 1 - span), out=self.clip_sum)
        if self.count % _REFRESH == 0:
            self._recompute(self.clip_sum, max(0, self.count - span), self.count)
            self._recompute(self.frame_sum, self.frame_lo, self.frame_hi)
        if self.count >= span:
            self.clip_scores.append(self._score(self.clip_sum))
        ready = self.count - (self.s.frame_window - self.s.frame_window // 2)  # frame whose window is full
        while len(self.frame_maps) <= ready:
            self._emit_frame_map(len(self.frame_maps))

    def finish(self) -> tuple[dict[str, np.ndarray], int]:
        """Emit what is left at the end of the video -> (arrays, num_frames)."""
        n = self.count + 1
        lo = max(0, self.count - self.s.span)  # the clip window holds flows [lo, count)
        for s in range(len(self.clip_scores), num_starts(n, self.s.span)):
            while lo < min(s, self.count):  # the last starts' windows are truncated at the end
                np.subtract(self.clip_sum, self._flow(lo), out=self.clip_sum)
                lo += 1
            self.clip_scores.append(self._score(self.clip_sum) if self.count else 0.0)
        while len(self.frame_maps) < n:
            t = len(self.frame_maps)
            if self.count:
                self._emit_frame_map(t)
            else:
                self.frame_maps.append(np.zeros(self.s.grid, np.float32))
        k = REPRESENTATIONS[self.s.representation]
        fields = np.stack(self.fields, axis=1) if self.fields else np.zeros((k, 0, *self.field_hw), np.int8)
        scales = np.stack(self.scales, axis=1) if self.scales else np.zeros((k, 0), np.float32)
        arrays = {"frame_maps": np.stack(self.frame_maps).astype(np.float32),
                  "clip_scores": np.asarray(self.clip_scores, np.float32), "fields": fields,
                  "scales": scales.astype(np.float32)}
        return arrays, n


def compute_video_motion(path: str | os.PathLike, settings: CacheSettings, threads: int | None = None,
                         flow_dir: str | os.PathLike | None = None, flow_batch: int = 8
                         ) -> tuple[dict[str, np.ndarray], dict]:
    """Motion data of one video -> (arrays, info) as stored in the cache.

    ``flow_dir``: read the video's flow from this folder of flow JPEGs (``settings.flow_backend`` is
    ``FLOW_JPEG``, ``settings.flow_options["bound"]`` their bound) instead of computing it; the video
    itself only gives its frame size. The entry's info records the folder as ``flow_from``.
    ``flow_batch``: frame pairs per RAFT forward pass (other backends go pair by pair); it changes the
    speed, not the flow, so the cache does not record it.
    """
    info = read_video_info(path)
    short = min(info.height, info.width)
    resize = settings.resize_short if settings.resize_short and short > settings.resize_short else None
    if flow_dir is not None:
        bound = float(settings.flow_options.get("bound", FLOW_BOUND))
        flows = read_flow_folder(flow_dir, bound, settings.resize_short)
        resize = None  # the flow images' own size decides; flow_hw records it
    else:
        estimator = _estimator(settings, threads, flow_batch)
        flows = estimator.stream(iter_frames(path, resize_short=resize))
    acc = None
    for u, v in flows:
        if acc is None:
            acc = _MotionAccumulator(settings, u.shape)
        acc.push(u, v)
    if acc is None:  # a single frame: no flow at all
        acc = _MotionAccumulator(settings, (info.height, info.width))
    arrays, n = acc.finish()
    meta = {"num_frames": n, "frame_hw": [info.height, info.width], "flow_hw": [int(x) for x in acc.hw],
            "resize_short": resize, "border": acc.border,
            "representation": settings.representation}
    if flow_dir is not None:
        meta["flow_from"] = os.path.abspath(flow_dir)
    return arrays, meta


_ESTIMATORS: dict[str, FlowEstimator] = {}


def _estimator(settings: CacheSettings, threads: int | None, batch_size: int) -> FlowEstimator:
    """RAFT: one FlowEstimator per process and configuration (weights loaded, device warmed up once).
    The OpenCV backends get a fresh one per video: a reused DIS object does not give bit-identical
    flow on the next video."""
    if settings.flow_backend != "raft":
        return FlowEstimator(settings.flow_backend, threads=threads, batch_size=batch_size,
                             **settings.flow_options)
    key = json.dumps([settings.flow_backend, settings.flow_options, threads, batch_size], sort_keys=True,
                     default=str)
    if key not in _ESTIMATORS:
        _ESTIMATORS.clear()
        _ESTIMATORS[key] = FlowEstimator(settings.flow_backend, threads=threads, batch_size=batch_size,
                                         **settings.flow_options)
    return _ESTIMATORS[key]


@dataclass
class PrepareSummary(RunSummary):
    """Counts of a ``prepare`` run; ``failed`` maps video path -> reason."""

    prepared: int = 0

    def __str__(self) -> str:
        rate = self.prepared / self.seconds if self.seconds > 0 else 0.0
        return self.describe(self.prepared, "prepared", f"{rate:.2f} videos/s, ")


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

    if dataset is None:
        base = Path(root)
        return base, {video_id(p, base): p for p in find_videos(base)}

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
            paths[video_id(p, base)] = p
    return base, paths


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the process that started it ends, however it ends (``kill -9`` included).

    Linux: the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere a
    daemon thread polls the parent id. A parent that died before the call is caught by the id check.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_worker(threads: int, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    cv2.setNumThreads(threads)


def _prepare_one(out: str, video_id: str, path: str, settings: CacheSettings,
                 threads: int | None, flow_from: str | None = None, flow_batch: int = 8
                 ) -> tuple[str, int, str | None]:
    """Worker: compute and write one entry -> (video_id, frames, error reason or None)."""
    try:
        flow_dir = os.path.join(flow_from, video_id) if flow_from else None
        arrays, info = compute_video_motion(path, settings, threads=threads, flow_dir=flow_dir,
                                            flow_batch=flow_batch)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # any per-video failure is recorded; the run goes on
        reason = f"{type(err).__name__}: {err}"
        write_failure(out, video_id, path, reason)
        return video_id, 0, reason
    write_entry(out, video_id, arrays, info)
    return video_id, info["num_frames"], None


def _iter_results(out: Path, todo: dict[str, Path], settings: CacheSettings, workers: int,
                  flow_from: str | None = None, flow_batch: int = 8) -> Iterable:
    """Yield ``(video_id, frames, reason)`` as videos finish (in-process when ``workers <= 1``)."""
    if workers <= 1:
        for vid, path in todo.items():
            yield _prepare_one(str(out), vid, str(path), settings, None, flow_from, flow_batch)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: a forked child of a process whose OpenMP/OpenCV thread pools already ran can hang
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        futures = [pool.submit(_prepare_one, str(out), vid, str(path), settings, threads, flow_from,
                               flow_batch) for vid, path in todo.items()]
        for fut in as_completed(futures):
            yield fut.result()


def prepare(root: str | os.PathLike, out: str | os.PathLike, settings: CacheSettings | None = None, *,
            workers: int = 1, shard: str | tuple[int, int] | None = None, dataset: str | None = None,
            split: int = 1, video_root: str | os.PathLike | None = None,
            progress: bool = True, flow_from: str | os.PathLike | None = None,
            flow_batch: int = 8) -> PrepareSummary:
    """Prepare the motion cache ``out`` for the videos of ``root`` (see :func:`list_videos`).

    Resumable: videos with a valid entry are skipped (a corrupt entry is prepared again).
    ``shard="i/N"`` prepares only that share of the videos
    (every video lands in exactly one of the N shards). Failures are logged, recorded in ``out/failed``
    and listed in the returned summary; they do not stop the run.

    ``flow_from``: a folder holding one flow-JPEG folder per video id (``<flow_from>/<video_id>/
    flow_x_00001.jpg``, ...; it may be the rawframes root itself); flow is read from there instead of
    computed. ``settings.flow_backend`` must then be ``FLOW_JPEG`` with ``flow_options={"bound": B}``.
    ``flow_batch``: frame pairs per RAFT forward pass (speed only; not recorded in the cache).
    """
    settings = settings or CacheSettings()
    out = Path(out)
    if (flow_from is None) != (settings.flow_backend != FLOW_JPEG):
        raise ValueError(f"flow_from needs flow_backend={FLOW_JPEG!r} and "
                         f"that backend needs flow_from (got {flow_from!r}, {settings.flow_backend!r})")
    init_cache(out, settings)
    _, videos = list_videos(root, dataset, split, video_root)
    if not videos:
        raise DataError(f"{root}: no videos to prepare (none under it, or none listed); check the path")
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
        flow_root = os.path.abspath(flow_from) if flow_from is not None else None
        for vid, frames, reason in _iter_results(out, todo, settings, workers, flow_root, flow_batch):
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
