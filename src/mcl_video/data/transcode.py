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
still transcoded. A full disk is not a bad source: the run stops at once with a ``RunFailedError``
naming the output folder (finished copies are kept; the rerun goes on from there).

``OUT/transcode.json`` records the settings (and the source folder) of the copies; a rerun with other
settings, or into a folder holding videos that no ``mcl transcode`` run recorded, is refused, so one
folder never mixes copies of two settings. ``OUT/.mcl-lock`` (``mcl_video.runlock``) keeps a second
transcode out of the folder while one runs. ``BENCHMARKS.md`` (decoding) gives the clip-read speed of
the copies.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType
from tqdm import tqdm

from mcl_video.atomic import DISK_FULL, atomic_path
from mcl_video.data.discovery import find_videos
from mcl_video.data.summary import RunSummary
from mcl_video.data.video import VideoReadError, read_video_info
from mcl_video.errors import RunFailedError, UsageError
from mcl_video.runlock import run_lock

log = logging.getLogger(__name__)

RECORD = "transcode.json"  # OUT/transcode.json: the settings the copies in OUT were written with
RECORD_FORMAT = "mcl-transcode"


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
        except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
            if getattr(err, "errno", None) in DISK_FULL:
                raise RunFailedError(f"{dst.parent}: disk full while writing the copy of {src} "
                                     f"({err.strerror}); free space and run `mcl transcode` again "
                                     "(finished copies are kept)") from None
            if not isinstance(err, (av.FFmpegError, UnicodeDecodeError)):
                raise
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
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:  # a full disk (or Ctrl-C): stop at once, start no other video
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def settings_record(settings: TranscodeSettings, src_root: Path) -> dict:
    """What ``OUT/transcode.json`` holds."""
    return {"format": RECORD_FORMAT, "settings": asdict(settings), "source": str(Path(src_root).resolve())}


def check_output_folder(out_root: Path, settings: TranscodeSettings, src_root: Path) -> None:
    """Refuse an OUT of other settings, or one holding videos no transcode run recorded; record ours."""
    record_path = out_root / RECORD
    wanted = settings_record(settings, src_root)
    if record_path.is_file():
        try:
            old = json.loads(record_path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"OUT {out_root}: {record_path} is unreadable ({err}); choose another "
                             "OUT") from None
        if old.get("settings") != wanted["settings"]:
            diff = ", ".join(f"{k}: {old.get('settings', {}).get(k)} -> {v}"
                             for k, v in wanted["settings"].items() if old.get("settings", {}).get(k) != v)
            raise UsageError(f"OUT {out_root} holds copies written with other settings ({diff}); one folder "
                             "would mix both: choose another OUT, or rerun with the recorded settings")
        return
    found = find_videos(out_root) if out_root.is_dir() else []
    if found:
        raise UsageError(f"OUT {out_root} already holds {len(found)} video(s) (e.g. {found[0]}) that no "
                         f"`mcl transcode` run recorded ({RECORD} is missing), so their settings are "
                         "unknown; choose an empty OUT")
    with atomic_path(record_path, "free space and run `mcl transcode` again") as tmp:
        tmp.write_text(json.dumps(wanted, indent=2))


def transcode(src_root: str | os.PathLike, out_root: str | os.PathLike,
              settings: TranscodeSettings | None = None, *, workers: int = 1,
              progress: bool = True) -> TranscodeSummary:
    """Copy every video under ``src_root`` (recursive; or the one file ``src_root``) to ``out_root``.

    Resumable: videos whose copy exists are skipped (copies appear only when complete). Failures are
    logged and listed in the returned summary; they do not stop the run (a full disk does: a
    ``RunFailedError`` naming the folder). ``OUT`` must be empty or hold copies of the same settings
    (``OUT/transcode.json``); a second transcode into it while this one runs is refused.
    """
    settings = settings or TranscodeSettings()
    src_root, out_root = Path(src_root), Path(out_root)
    if src_root.is_file():
        sources, base = [src_root], src_root.parent
    else:
        sources, base = find_videos(src_root), src_root
    if out_root.resolve() == base.resolve() or base.resolve() in out_root.resolve().parents:
        raise ValueError(f"OUT {out_root} lies inside the source folder {base}; choose a folder outside it")
    with run_lock(out_root, f"mcl transcode into {out_root}"):
        check_output_folder(out_root, settings, base)
        return _transcode_locked(sources, base, out_root, settings, workers, progress)


def _transcode_locked(sources: list[Path], base: Path, out_root: Path, settings: TranscodeSettings,
                      workers: int, progress: bool) -> TranscodeSummary:
    plan = {src: output_path(src, base, out_root) for src in sources}
    todo = {src: dst for src, dst in plan.items() if not dst.is_file()}
    summary = TranscodeSummary(total=len(plan), skipped=len(plan) - len(todo))
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="video", disable=not progress, dynamic_ncols=True)
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
