"""Decode benchmark: PyAV (mcl_video.data.video) vs OpenCV (cv2.VideoCapture), sequential and random clips.

Measures, per real clip in ../shared/data/clips (native size; the UCF101 AVIs are 320x240):
- sequential: whole-video decode to RGB uint8, frames/s;
- clip: random 16-frame clips at stride 2 (31-frame span), clips/s. PyAV uses ``read_clip`` (keyframe
  seek, packet index rebuilt for every clip: a cold cache). OpenCV sets CAP_PROP_POS_FRAMES, then grabs
  the span and retrieves every 2nd frame. "exact" is the fraction of OpenCV clips whose frames equal
  the sequential decode at the same indices (OpenCV seeking is not frame-exact on every container).

    python benchmarks/decode.py            # 40 clips per file, all clips including the 1080p AVI
    python benchmarks/decode.py --quick    # 8 clips per file, the UCF101 AVIs and the MP4s only
    python benchmarks/decode.py --transcoded [--rounds 3] [--threading]

``--transcoded`` writes the copies ``mcl transcode --short-side 256 --gop 16`` makes (defaults) of the
1080p AVI, the two long-GOP MP4s and the UCF101 AVIs, then reads the same random clips from the original
(``read_clip(..., resize_short=256)``: the same output size) and from the copy, arms interleaved over
``--rounds`` rounds (median clips/s; packet index rebuilt for every clip as above). ``--threading`` adds
PyAV's decoder threading modes (AUTO, SLICE, FRAME, NONE) on the copies.

``--torchcodec [--device cuda]`` reads the same random clips with ``read_clip`` (PyAV) and with
``mcl_video.data.torchcodec_reader`` (torchcodec, optional: it needs the system's FFmpeg libraries),
arms interleaved over ``--rounds`` rounds, median clips/s per file, and the largest pixel difference
between the two arms' frames. On CUDA the torchcodec frames are decoded into device memory (NVDEC).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import av
import cv2
import numpy as np

from mcl_video.data import read_clip, read_frames, read_video_info
from mcl_video.data import video as video_module
from mcl_video.data.transcode import TranscodeSettings, transcode_video

CLIPS = Path(os.environ.get("MCL_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "clips"
QUICK_FILES = ["v_ApplyEyeMakeup_g01_c01.avi", "v_BaseballPitch_g01_c01.avi", "mmaction2_demo.mp4",
               "mmaction2_test.mp4"]
ALL_FILES = QUICK_FILES + ["S001C001P001R001A001_rgb.avi", "v_CricketShot_g04_c01_rgb.gif"]
CLIP_LEN, STRIDE = 16, 2


def cv2_frames(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def cv2_clip(path: Path, indices: list[int]) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, indices[0])
    wanted, frames = set(indices), []
    for i in range(indices[0], indices[-1] + 1):
        if not cap.grab():
            break
        if i in wanted:
            frames.append(cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames) if frames else np.zeros((0,), np.uint8)


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_file(path: Path, n_clips: int, rng: np.random.Generator) -> dict:
    info = read_video_info(path)
    ref = read_frames(path)
    span = (CLIP_LEN - 1) * STRIDE + 1
    starts = rng.integers(0, max(1, info.num_frames - span + 1), size=n_clips)
    clips = [list(range(int(s), int(s) + span, STRIDE)) for s in starts]
    row = {"file": path.name, "size": f"{info.width}x{info.height}", "frames": info.num_frames}
    row["av_seq"] = info.num_frames / timed(lambda: read_frames(path), 2)
    row["cv_seq"] = info.num_frames / timed(lambda: cv2_frames(path), 2)

    def av_clips():
        for ix in clips:
            video_module._INDEX_CACHE.clear()
            read_clip(path, ix)

    def cv_clips():
        for ix in clips:
            cv2_clip(path, ix)

    before = video_module.DECODE_STATS["clip_frames_decoded"]
    row["av_clip"] = n_clips / timed(av_clips)
    row["av_decoded"] = (video_module.DECODE_STATS["clip_frames_decoded"] - before) / n_clips
    row["cv_clip"] = n_clips / timed(cv_clips)
    exact_av = [np.array_equal(read_clip(path, ix).numpy(), ref[ix]) for ix in clips]
    exact_cv = [np.array_equal(cv2_clip(path, ix), ref[ix]) for ix in clips]
    row["av_exact"], row["cv_exact"] = float(np.mean(exact_av)), float(np.mean(exact_cv))
    return row


TRANSCODE_FILES = ["S001C001P001R001A001_rgb.avi", "mmaction2_demo.mp4", "mmaction2_test.mp4",
                   "v_ApplyEyeMakeup_g01_c01.avi", "v_BaseballPitch_g01_c01.avi"]


@contextmanager
def thread_type(mode: str):
    """Decode with PyAV threading ``mode`` instead of the reader's AUTO."""
    enter = video_module._OpenVideo.__enter__

    def patched(self):
        container, stream = enter(self)
        stream.thread_type = mode
        return container, stream

    video_module._OpenVideo.__enter__ = patched
    try:
        yield
    finally:
        video_module._OpenVideo.__enter__ = enter


def clip_rate(path: Path, clips: list[list[int]], resize_short: int | None) -> tuple[float, float]:
    """(clips/s, frames decoded per clip) of ``read_clip`` with a cold packet index."""
    before = video_module.DECODE_STATS["clip_frames_decoded"]
    start = time.perf_counter()
    for ix in clips:
        video_module._INDEX_CACHE.clear()
        read_clip(path, ix, resize_short)
    rate = len(clips) / (time.perf_counter() - start)
    return rate, (video_module.DECODE_STATS["clip_frames_decoded"] - before) / len(clips)


def bench_transcoded(n_clips: int, rounds: int, threading: bool, rng: np.random.Generator) -> None:
    settings = TranscodeSettings()
    span = (CLIP_LEN - 1) * STRIDE + 1
    print(f"copies: short side {settings.short_side}, GOP {settings.gop}, crf {settings.crf}, preset "
          f"{settings.preset}; {n_clips} clips per file and arm, median clips/s of {rounds} interleaved "
          "rounds\n\n| file | size -> copy | bytes -> copy | transcode frames/s | keyframes -> copy | "
          "original clips/s (resize 256) | copy clips/s | gain | frames decoded per clip |\n"
          "|---|---|---|---|---|---|---|---|---|")
    modes = ("AUTO", "SLICE", "FRAME", "NONE")
    threads: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in TRANSCODE_FILES:
            src, dst = CLIPS / name, Path(tmp) / (Path(name).stem + ".mp4")
            start = time.perf_counter()
            frames = transcode_video(src, dst, settings)
            tc_rate = frames / (time.perf_counter() - start)
            a, b = read_video_info(src), read_video_info(dst)
            starts = rng.integers(0, max(1, a.num_frames - span + 1), size=n_clips)
            clips = [list(range(int(s), int(s) + span, STRIDE)) for s in starts]
            orig, copy = [], []
            for _ in range(rounds):
                orig.append(clip_rate(src, clips, settings.short_side))
                copy.append(clip_rate(dst, clips, None))
            o, c = np.median([r[0] for r in orig]), np.median([r[0] for r in copy])
            print(f"| {name} | {a.width}x{a.height} -> {b.width}x{b.height} | {src.stat().st_size} -> "
                  f"{dst.stat().st_size} | {tc_rate:.0f} | {len(video_module._get_index(src).keyframes)} -> "
                  f"{len(video_module._get_index(dst).keyframes)} | {o:.1f} | {c:.1f} | {c / o:.1f}x | "
                  f"{orig[0][1]:.0f} -> {copy[0][1]:.0f} |")
            if threading:
                per_mode: dict[str, list[float]] = {m: [] for m in modes}
                for _ in range(rounds):
                    for m in modes:
                        with thread_type(m):
                            per_mode[m].append(clip_rate(dst, clips, None)[0])
                threads[name] = [f"{np.median(per_mode[m]):.1f}" for m in modes]
    if threads:
        print("\nPyAV threading on the copies, clips/s (median of the rounds)\n\n| copy of | "
              + " | ".join(modes) + " |\n|---|" + "---|" * len(modes))
        for name, row in threads.items():
            print(f"| {name} | " + " | ".join(row) + " |")


def bench_torchcodec(files: list[str], n_clips: int, rounds: int, device: str,
                     rng: np.random.Generator) -> None:
    from mcl_video.data import torchcodec_reader

    if not torchcodec_reader.available():
        print(f"torchcodec: {torchcodec_reader.unavailable_reason()}")
        return
    import torch
    import torchcodec

    print(f"torchcodec {torchcodec.__version__} on {device}; {n_clips} random clips of {CLIP_LEN} frames at "
          f"stride {STRIDE} per file and arm, the same clips for both arms, {rounds} interleaved rounds\n")
    print("| file | size | PyAV clips/s | torchcodec clips/s | torchcodec / PyAV | max pixel difference |")
    print("|---|---|---|---|---|---|")
    for name in files:
        path = CLIPS / name
        info = read_video_info(path)
        span = (CLIP_LEN - 1) * STRIDE + 1
        clips = [list(int(s) + STRIDE * np.arange(CLIP_LEN))
                 for s in rng.integers(0, max(1, info.num_frames - span + 1), n_clips)]
        # both arms index the file for every clip: PyAV's packet index is cleared, torchcodec's exact
        # seek mode scans the file when its decoder opens
        arms = {"pyav": lambda c, p=path: (video_module._INDEX_CACHE.clear(), read_clip(p, c)),
                "torchcodec": lambda c, p=path: torchcodec_reader.read_clip_torchcodec(p, c, device=device)}
        rates: dict[str, list[float]] = {k: [] for k in arms}
        for _ in range(rounds):
            for arm, fn in arms.items():
                start = time.perf_counter()
                for c in clips:
                    fn(c)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                rates[arm].append(len(clips) / (time.perf_counter() - start))
        diff = max(int((read_clip(path, c).int() - torchcodec_reader.read_clip_torchcodec(path, c).int())
                       .abs().max()) for c in clips[:4])
        pa, tc = float(np.median(rates["pyav"])), float(np.median(rates["torchcodec"]))
        print(f"| {name} | {info.width}x{info.height} | {pa:.1f} | {tc:.1f} | {tc / pa:.2f}x | {diff} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 clips per file, skip the 1080p AVI and GIF")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transcoded", action="store_true",
                        help="clip reads from the originals vs their `mcl transcode` copies")
    parser.add_argument("--rounds", type=int, default=3, help="with --transcoded: interleaved rounds")
    parser.add_argument("--clips", type=int, default=20, help="with --transcoded: clips per file and arm")
    parser.add_argument("--threading", action="store_true", help="with --transcoded: PyAV threading modes")
    parser.add_argument("--torchcodec", action="store_true", help="clip reads: PyAV vs torchcodec")
    parser.add_argument("--device", default="cpu", help="with --torchcodec: cpu or cuda (NVDEC)")
    args = parser.parse_args(argv)
    if not CLIPS.is_dir():
        print(f"error: {CLIPS} not found; set MCL_SHARED to the folder holding data/clips", file=sys.stderr)
        return 1
    files, n_clips = (QUICK_FILES, 8) if args.quick else (ALL_FILES, 40)
    rng = np.random.default_rng(args.seed)
    if args.torchcodec:
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; PyAV {av.__version__}")
        bench_torchcodec(files, args.clips, args.rounds, args.device, rng)
        return 0
    if args.transcoded:
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; PyAV {av.__version__}\n")
        bench_transcoded(args.clips, args.rounds, args.threading, rng)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; cv2 {cv2.__version__}, "
          f"cv2 threads {cv2.getNumThreads()}; {n_clips} clips of {CLIP_LEN} frames at stride {STRIDE} "
          "per file; best of 2 for sequential\n")
    print("| file | size | frames | PyAV seq frames/s | OpenCV seq frames/s | PyAV clips/s "
          "| OpenCV clips/s | PyAV frames decoded per clip | PyAV exact | OpenCV exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in files:
        r = bench_file(CLIPS / name, n_clips, rng)
        print(f"| {r['file']} | {r['size']} | {r['frames']} | {r['av_seq']:.0f} | {r['cv_seq']:.0f} "
              f"| {r['av_clip']:.1f} | {r['cv_clip']:.1f} | {r['av_decoded']:.0f} | {r['av_exact']:.0%} "
              f"| {r['cv_exact']:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
