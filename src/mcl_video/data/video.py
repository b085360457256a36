"""Video reading with PyAV: frame counts by demuxing, exact random access by keyframe seeking.

Every reader opens the file once per call. A per-file *packet index* (one demux pass, no decoding; a
few milliseconds for a UCF101 or Kinetics clip) gives the true frame count, the keyframe positions and
the presentation timestamp of every frame. It is cached in memory (keyed by path, size and mtime),
never on disk.

Frame identity:
- containers with real presentation timestamps (MP4/MOV, MKV/WebM, ...): frame ``i`` is the frame whose
  pts is the ``i``-th smallest packet pts, so a frame decoded after a seek is identified exactly;
- AVI (its packet "pts" are decode counters, and frames of B-frame streams come out with shuffled
  pts) and GIF: frames are counted in output order from a keyframe, whose position is its packet's.

``read_clip`` seeks to the last keyframe at or before the first wanted frame, decodes forward, and seeks
again only when the next wanted frame lies beyond a further keyframe, so a 16-frame clip decodes about
one GOP plus the clip. If anything is still missing (a seek that lands elsewhere, dropped frames), the
missing frames are read by one sequential pass, so results always equal those of ``read_frames``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import av
import av.logging
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from mcl_video.data import rawframes
from mcl_video.data.rawframes import resized_hw  # noqa: F401  (also part of this module's API)
from mcl_video.errors import DataError

log = logging.getLogger(__name__)

# FFmpeg writes warnings for every damaged packet; errors reach the caller as VideoReadError instead.
av.logging.set_level(None)

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg")

_PTS_CONTAINERS = ("mov", "mp4", "matroska", "webm", "mpegts", "flv", "ogg")
_TRUNCATION_SLACK_S = 0.5  # declared duration may exceed the last frame by this much (audio tails)

# frames decoded by read_clip's seeking path since import (tests and benchmarks check efficiency with it)
DECODE_STATS = {"clip_frames_decoded": 0}


class VideoReadError(DataError):
    """A file that cannot be read as a video: missing, unreadable, not a video, truncated or corrupt."""


@dataclass(frozen=True)
class VideoInfo:
    """Decodable frame count, frame rate and frame size of a video."""

    num_frames: int
    fps: float
    height: int
    width: int


@dataclass(frozen=True)
class _Index:
    """Packet index of the first video stream.

    ``order_pts[i]``: pts of frame ``i`` (presentation order) or None in counting mode;
    ``keyframes``: sorted frame positions of keyframes; ``seek_ts[k]``: timestamp to seek to for the
    keyframe at position ``k``.
    """

    info: VideoInfo
    order_pts: tuple[int, ...] | None
    keyframes: tuple[int, ...]
    seek_ts: dict[int, int]


def read_video_info(path: str | os.PathLike) -> VideoInfo:
    """True decodable frame count (packets counted by demuxing), fps and frame size of a video.

    A frame folder: its number of frames and the size of its first frame; fps 0 (not known).
    """
    if os.path.isdir(path):
        with _frame_folder_errors():
            num_frames, height, width = rawframes.folder_info(path)
        return VideoInfo(num_frames=num_frames, fps=0.0, height=height, width=width)
    return _get_index(path).info


def read_clip(
    path: str | os.PathLike, indices: Sequence[int] | np.ndarray, resize_short: int | None = None
) -> torch.Tensor:
    """Frames at 0-based ``indices`` as a uint8 ``T x H x W x 3`` RGB tensor.

    Indices may repeat and need not be sorted; indices past the end are clamped to the last frame.
    ``resize_short``: resize so the short side has this many pixels, keeping the aspect ratio.
    """
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
        raise ValueError(f"read_clip({path}): indices is empty; pass at least one frame index")
    if min(idx) < 0:
        raise ValueError(f"read_clip({path}): negative frame index {min(idx)}; indices are 0-based")
    if os.path.isdir(path):
        with _frame_folder_errors():
            _, height, width = rawframes.folder_info(path)
            hw = resized_hw(height, width, resize_short) if resize_short is not None else None
            return torch.from_numpy(rawframes.read_folder_clip(path, idx, hw, (height, width)))
    index = _get_index(path)
    last = index.info.num_frames - 1
    idx = [min(i, last) for i in idx]
    wanted = sorted(set(idx))
    with _OpenVideo(path) as (container, stream):
        frames = _decode_wanted(path, container, stream, index, wanted, resize_short)
    missing = [i for i in wanted if i not in frames]
    if missing:
        log.debug("%s: %d frames not reached by seeking, reading sequentially", path, len(missing))
        frames.update(_sequential_pick(path, set(missing), resize_short))
        # frames the container lists but the decoder never produced: use the last decoded one
        decoded_last = max(frames)
        for i in missing:
            if i not in frames:
                frames[i] = frames[decoded_last]
    return torch.from_numpy(np.stack([frames[i] for i in idx]))


def iter_frames(path: str | os.PathLike, resize_short: int | None = None) -> Iterator[np.ndarray]:
    """Every frame in order, as ``H x W x 3`` uint8 RGB numpy arrays."""
    if os.path.isdir(path):
        with _frame_folder_errors():
            _, height, width = rawframes.folder_info(path)
            hw = resized_hw(height, width, resize_short) if resize_short is not None else None
            yield from rawframes.iter_folder_frames(path, hw, (height, width))
        return
    _get_index(path)  # raises VideoReadError for truncated files before any frame is yielded
    with _OpenVideo(path) as (container, stream):
        reformatter = VideoReformatter()
        try:
            for frame in container.decode(stream):
                yield _to_rgb(frame, resize_short, reformatter)
        except av.FFmpegError as err:
            raise VideoReadError(f"{path}: decoding failed ({err}); the file is corrupt") from err


def read_frames(path: str | os.PathLike, resize_short: int | None = None) -> np.ndarray:
    """Every frame as a uint8 ``N x H x W x 3`` RGB array (sequential decode)."""
    frames = list(iter_frames(path, resize_short))
    if not frames:
        raise VideoReadError(f"{path}: no frame could be decoded; the file is empty or corrupt")
    return np.stack(frames)


@contextmanager
def _frame_folder_errors():
    """A frame folder's errors as VideoReadError, the one error readers of videos handle."""
    try:
        yield
    except rawframes.FrameFolderError as err:
        raise VideoReadError(str(err)) from None


# ----------------------------------------------------------------------------------------------------
# opening, converting


class _OpenVideo:
    """Context manager: ``(container, first video stream)`` with errors turned into VideoReadError."""

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def __enter__(self):
        path = self.path
        if not os.path.isfile(path):
            raise VideoReadError(f"{path}: no such file; check the path and the video root")
        try:
            self.container = av.open(str(path), metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError) as err:
            raise VideoReadError(f"{path}: cannot be opened as a video ({err}); it is not a video, "
                                  "or it is truncated or corrupt") from err
        if not self.container.streams.video:
            self.container.close()
            raise VideoReadError(f"{path}: the container has no video stream")
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        return self.container, stream

    def __exit__(self, *exc):
        self.container.close()
        return False


def _to_rgb(frame: av.VideoFrame, resize_short: int | None, reformatter: VideoReformatter) -> np.ndarray:
    """Decoded frame -> ``H x W x 3`` uint8 RGB, short side resized with an area-averaging filter.

    One ``reformatter`` per opened file keeps FFmpeg's scaler context between frames (2-3x faster than
    ``frame.to_ndarray(format="rgb24")``, which sets up a new one per frame; BENCHMARKS.md, decode).
    """
    if resize_short is None:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    h, w = resized_hw(frame.height, frame.width, resize_short)
    return reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()


# ----------------------------------------------------------------------------------------------------
# packet index

_INDEX_CACHE: OrderedDict[tuple, _Index] = OrderedDict()
_INDEX_CACHE_SIZE = 4096


def _get_index(path: str | os.PathLike) -> _Index:
    try:
        st = os.stat(path)
    except OSError as err:
        msg = f"{path}: no such file ({err.strerror}); check the path and the video root"
        raise VideoReadError(msg) from None
    if not os.access(path, os.R_OK):  # else FFmpeg reports it as "not a video, or corrupt"
        raise VideoReadError(f"{path}: permission denied (the file is not readable by this user); fix its "
                             "permissions, e.g. chmod a+r")
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key in _INDEX_CACHE:
        _INDEX_CACHE.move_to_end(key)
        return _INDEX_CACHE[key]
    index = _build_index(path, st.st_size)
    _INDEX_CACHE[key] = index
    if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
        _INDEX_CACHE.popitem(last=False)
    return index


def _build_index(path: str | os.PathLike, file_size: int) -> _Index:
    """One demux pass over the first video stream (no decoding)."""
    with _OpenVideo(path) as (container, stream):
        fmt = container.format.name
        packets = []  # (pts, dts, keyframe) of non-empty packets in decode order
        try:
            for pkt in container.demux(stream):
                if pkt.size:
                    packets.append((pkt.pts, pkt.dts, bool(pkt.is_keyframe)))
        except av.FFmpegError as err:
            raise VideoReadError(f"{path}: demuxing stopped after {len(packets)} frames ({err}); "
                                 "the file is truncated or corrupt") from err
        if not packets:
            raise VideoReadError(f"{path}: the video stream has no frames")
        tb = stream.time_base
        declared = _declared_seconds(container, stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = stream.codec_context.width, stream.codec_context.height
    _check_truncation(path, fmt, file_size, packets, tb, declared, rate)
    fps = float(rate) if rate else 0.0
    info = VideoInfo(num_frames=len(packets), fps=fps, height=int(height), width=int(width))
    pts = [p[0] for p in packets]
    pts_container = any(f in _PTS_CONTAINERS for f in fmt.split(","))
    use_pts = pts_container and None not in pts and len(set(pts)) == len(pts)
    if use_pts:
        order = sorted(pts)
        position = {p: i for i, p in enumerate(order)}
        seek_ts = {position[p]: p for p, _, key in packets if key}
        return _Index(info, tuple(order), tuple(sorted(seek_ts)), seek_ts)
    seek_ts = _counting_seek_points(packets) if fmt != "gif" else {}
    seek_ts.setdefault(0, None)
    return _Index(info, None, tuple(sorted(seek_ts)), seek_ts)


def _counting_seek_points(packets: list) -> dict[int, int]:
    """Keyframes safe to seek to when frames are identified by counting (AVI).

    A keyframe at decode position ``k`` is safe when exactly ``k`` packets are displayed before it (its
    pts rank equals ``k``): then decoding from it outputs the keyframe first. Keyframes of open GOPs
    (B-frames of the previous GOP decoded after them) fail the test and are not used; without packet
    pts only decode positions are known and every keyframe is taken as closed.
    """
    pts = [p[0] for p in packets]
    ranks = None
    if None not in pts and len(set(pts)) == len(pts):
        ranks = {p: r for r, p in enumerate(sorted(pts))}
    points = {}
    for k, (p, d, key) in enumerate(packets):
        ts = d if d is not None else p
        if key and ts is not None and (ranks is None or ranks[p] == k):
            points[k] = ts
    return points


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_truncation(path, fmt: str, file_size: int, packets: list, tb, declared, rate) -> None:
    """Raise VideoReadError when the file ends before its container says it does."""
    reason = None
    if fmt == "avi":
        with open(path, "rb") as fh:
            head = fh.read(8)
        riff_size = int.from_bytes(head[4:8], "little") + 8 if head[:4] == b"RIFF" else None
        if riff_size is not None and file_size < riff_size:
            reason = f"the RIFF header declares {riff_size} bytes but the file has {file_size}"
    elif fmt == "gif":
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\x3b":
                reason = "the GIF trailer byte is missing"
    elif declared and tb and rate:
        stamps = [p[0] for p in packets if p[0] is not None]
        if stamps:
            covered = float((max(stamps) - min(stamps)) * tb) + 1.0 / float(rate)
            if covered < declared - max(_TRUNCATION_SLACK_S, 0.05 * declared):
                reason = f"frames cover {covered:.2f} s of the declared {declared:.2f} s"
    if reason:
        raise VideoReadError(f"{path}: truncated file ({reason}); re-download or re-encode it")


# ----------------------------------------------------------------------------------------------------
# decoding wanted frames


def _keyframe_before(index: _Index, position: int) -> int:
    keys = index.keyframes
    lo, hi = 0, len(keys) - 1
    best = keys[0]
    while lo <= hi:  # binary search for the last keyframe <= position
        mid = (lo + hi) // 2
        if keys[mid] <= position:
            best, lo = keys[mid], mid + 1
        else:
            hi = mid - 1
    return best


def _decode_wanted(path, container, stream, index: _Index, wanted: list[int], resize_short) -> dict:
    """Decode the sorted frame positions ``wanted``, seeking to keyframes; returns {position: frame}."""
    position_of = {p: i for i, p in enumerate(index.order_pts)} if index.order_pts is not None else None
    frames: dict[int, np.ndarray] = {}
    todo = list(wanted)
    reformatter = VideoReformatter()
    next_pos = 0  # position of the next frame the decoder will output (decoder at file start)
    try:
        while todo:
            key = _keyframe_before(index, todo[0])
            if key > next_pos or todo[0] < next_pos:
                if index.seek_ts[key] is None:
                    break
                container.seek(index.seek_ts[key], stream=stream, backward=True, any_frame=False)
                next_pos = key
            next_pos = _decode_run(container, stream, index, todo, frames, next_pos, position_of,
                                   lambda frame: _to_rgb(frame, resize_short, reformatter))
            if todo and next_pos <= todo[0] and _keyframe_before(index, todo[0]) <= next_pos:
                break  # decoder ran out before the wanted frame: leave the rest to the fallback
    except av.FFmpegError as err:
        raise VideoReadError(f"{path}: decoding failed ({err}); the file is corrupt") from err
    return frames


def _decode_run(container, stream, index, todo, frames, next_pos, position_of, convert) -> int:
    """Decode forward from the current point until ``todo[0]`` needs a new seek; pops satisfied items."""
    for frame in container.decode(stream):
        DECODE_STATS["clip_frames_decoded"] += 1
        if position_of is not None:
            pos = position_of.get(frame.pts)
            if pos is None:
                continue
        else:
            pos = next_pos
        next_pos = pos + 1
        while todo and todo[0] < pos:  # skipped over (e.g. seek landed late): fallback reads it
            todo.pop(0)
        if todo and todo[0] == pos:
            frames[pos] = convert(frame)
            todo.pop(0)
        if not todo:
            break
        if _keyframe_before(index, todo[0]) > next_pos:
            break  # cheaper to seek to the keyframe before the next wanted frame
    return next_pos


def _sequential_pick(path, wanted: set[int], resize_short) -> dict:
    """Frames at positions ``wanted`` by counting from the start (only those are converted to RGB)."""
    frames = {}
    with _OpenVideo(path) as (container, stream):
        reformatter = VideoReformatter()
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    frames[i] = _to_rgb(frame, resize_short, reformatter)
                    if len(frames) == len(wanted):
                        break
        except av.FFmpegError as err:
            raise VideoReadError(f"{path}: decoding failed ({err}); the file is corrupt") from err
    return frames
