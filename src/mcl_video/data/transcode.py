"""Resized, short-GOP H.264 copies of a video folder, for fast random clip reads (``mcl transcode``).

Random clip reads seek to the last keyframe before the clip and decode forward (``video.py``), so their
cost is about one GOP plus the clip, at the stored resolution. Datasets as downloaded often have long
GOPs (a keyframe every 250 frames, or a single one) and sizes far above the 112-224 px a model sees;
the usual practice (e.g. for Kinetics) is to re-encode them once with a short side of 256 px. Here each
video becomes ``OUT/<relative path>.mp4``: libx264, yuv420p, a closed GOP of exactly ``gop`` frames
(an IDR keyframe every ``gop`` frames, no scene-cut keyframes), short side ``short_side`` (area
resize, aspect kept, sides rounded to even; smaller videos keep their size), the source's average frame
rate, every decoded frame kept (the copy has the same frame count), no audio.

Each copy is encoded to a temporary name in its folder, checked (its frame count must equal the
source's) and then renamed, so an existing output is complete: a rerun skips it. A source that cannot
be read (not a video, truncated, corrupt) is reported with its reason and skipped; the other videos are
still transcoded. ``BENCHMARKS.md`` (decoding) gives the clip-read speed of the copies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType

from mcl_video.atomic import atomic_path
from mcl_video.data.discovery import find_videos
from mcl_video.data.summary import RunSummary
from mcl_video.data.video import VideoReadError, read_video_info
from mcl_video.progress import progress as progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscodeSettings:
    """Encoding options of the copies."""

    short_side: int | None = 256  # None: keep the source size
    gop: int = 16
    crf: int = 23
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if self.short_side is not None and self.short_side < 2:
            raise ValueError(f"short_side must be >= 2 pixels (or None), got {self.short_side}")
        if self.gop < 1 or not 0 <= self.crf <= 51:
            raise ValueError(f"need gop >= 1 and crf in 0..51, got gop={self.gop} crf={self.crf}")


@dataclass
class TranscodeSummary(RunSummary):
    """Counts of a transcode run; ``failed`` maps source path -> reason."""

    written: int = 0

    def __str__(self) -> str:
        return self.describe(self.written, "transcoded")


def output_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """Size of the copy: short side ``short_side`` unless the source is smaller, both sides even."""
    h, w = height, width
    if short_side is not None and min(h, w) > short_side:
        if h <= w:
            h, w = short_side, round(width * short_side / height)
        else:
            h, w = round(height * short_side / width), short_side
    return max(2, h - h % 2), max(2, w - w % 2)


def output_path(src: Path, src_root: Path, out_root: Path) -> Path:
    """``OUT/<path relative to the source root>`` with the extension ``.mp4``."""
    return (out_root / src.relative_to(src_root)).with_suffix(".mp4")


def _encode(src: Path, tmp: Path, settings: TranscodeSettings, threads: int) -> int:
    """Decode ``src`` and write the copy to ``tmp`` -> frames written."""
    with av.open(str(src), metadata_errors="ignore") as inp:
        if not inp.streams.video:
            raise VideoReadError(f"{src}: the container has no video stream")
        istream = inp.streams.video[0]
        istream.thread_type = "AUTO"
        rate = Fraction(istream.average_rate or istream.guessed_rate or 25).limit_denominator(100000)
        h, w = output_size(istream.codec_context.height, istream.codec_context.width, settings.short_side)
        g = settings.gop
        with av.open(str(tmp), "w", format="mp4") as out:
            ostream = out.add_stream("libx264", rate=rate, options={
                "crf": str(settings.crf), "preset": settings.preset,
                "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0:open-gop=0"})
            ostream.width, ostream.height, ostream.pix_fmt = w, h, "yuv420p"
            ostream.codec_context.gop_size = g
            ostream.codec_context.thread_count = threads
            count = 0
            for frame in inp.decode(istream):
                small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                small.pts, small.time_base = count, 1 / rate  # frames at a constant rate, none dropped
                small.pict_type = PictureType.NONE  # the source's keyframes would force extra ones
                out.mux(ostream.encode(small))
                count += 1
            out.mux(ostream.encode(None))
    return count


def transcode_video(src: str | os.PathLike, dst: str | os.PathLike, settings: TranscodeSettings,
                    threads: int = 0) -> int:
    """Write the copy of ``src`` to ``dst`` (temporary name, check, rename) -> frames written.

    Raises :class:`VideoReadError` for a source that cannot be read or whose copy would lose frames.
    ``threads``: encoder threads (0: libx264 chooses).
    """
    src, dst = Path(src), Path(dst)
    expected = read_video_info(src).num_frames  # raises VideoReadError for unreadable or truncated files
    dst.parent.mkdir(parents=True, exist_ok=True)
    for stale in dst.parent.glob(f".{dst.name}.tmp-*"):  # left by a killed run
        stale.unlink(missing_ok=True)
    with atomic_path(dst, "free space and run `mcl transcode` again (finished copies are kept)") as tmp:
        try:
            written = _encode(src, tmp, settings, threads)
        except (av.FFmpegError, UnicodeDecodeError) as err:
            raise VideoReadError(f"{src}: decoding or encoding failed ({err}); the file is corrupt") from err
        got = read_video_info(tmp).num_frames
        if not written == got == expected:
            raise VideoReadError(f"{src}: the copy has {got} frames ({written} decoded) where the source "
                                 f"lists {expected}; the file is damaged")
    return written


def _one(src: str, dst: str, settings: TranscodeSettings, threads: int) -> tuple[str, int, str | None]:
    """Worker: transcode one video -> (src, frames, error reason or None)."""
    try:
        return src, transcode_video(src, dst, settings, threads), None
    except VideoReadError as err:
        return src, 0, str(err)


def _results(todo: dict[Path, Path], settings: TranscodeSettings, workers: int):
    if workers <= 1:
        for src, dst in todo.items():
            yield _one(str(src), str(dst), settings, 0)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: forking a process whose FFmpeg/OpenMP thread pools already ran can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_one, str(s), str(d), settings, threads) for s, d in todo.items()]
        for fut in as_completed(futures):
            yield fut.result()


def transcode(src_root: str | os.PathLike, out_root: str | os.PathLike,
              settings: TranscodeSettings | None = None, *, workers: int = 1,
              progress: bool = True) -> TranscodeSummary:
    """Copy every video under ``src_root`` (recursive; or the one file ``src_root``) to ``out_root``.

    Resumable: videos whose copy exists are skipped (copies appear only when complete). Failures are
    logged and listed in the returned summary; they do not stop the run.
    """
    settings = settings or TranscodeSettings()
    src_root, out_root = Path(src_root), Path(out_root)
    if src_root.is_file():
        sources, base = [src_root], src_root.parent
    else:
        sources, base = find_videos(src_root), src_root
    if out_root.resolve() == base.resolve() or base.resolve() in out_root.resolve().parents:
        raise ValueError(f"OUT {out_root} lies inside the source folder {base}; choose a folder outside it")
    plan = {src: output_path(src, base, out_root) for src in sources}
    todo = {src: dst for src, dst in plan.items() if not dst.is_file()}
    summary = TranscodeSummary(total=len(plan), skipped=len(plan) - len(todo))
    start = time.perf_counter()
    bar = progress_bar(total=len(todo), unit="video", disable=not progress, dynamic_ncols=True)
    try:
        for src, frames, reason in _results(todo, settings, workers):
            if reason is None:
                summary.written += 1
                summary.frames += frames
            else:
                summary.failed[src] = reason
                log.warning("could not transcode %s: %s", src, reason)
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{summary.frames / max(time.perf_counter() - start, 1e-9):.0f}",
                            failed=len(summary.failed))
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary
