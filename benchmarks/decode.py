"""Decode benchmark: PyAV (mcl_video.data.video) vs OpenCV (cv2.VideoCapture), sequential and random clips.

Measures, per real clip in ../shared/data/clips (native size; the UCF101 AVIs are 320x240):
- sequential: whole-video decode to RGB uint8, frames/s;
- clip: random 16-frame clips at stride 2 (31-frame span), clips/s. PyAV uses ``read_clip`` (keyframe
  seek, packet index rebuilt for every clip: a cold cache). OpenCV sets CAP_PROP_POS_FRAMES, then grabs
  the span and retrieves every 2nd frame. "exact" is the fraction of OpenCV clips whose frames equal
  the sequential decode at the same indices (OpenCV seeking is not frame-exact on every container).

    python benchmarks/decode.py            # 40 clips per file, all clips including the 1080p AVI
    python benchmarks/decode.py --quick    # 8 clips per file, the UCF101 AVIs and the MP4s only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mcl_video.data import read_clip, read_frames, read_video_info
from mcl_video.data import video as video_module

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 clips per file, skip the 1080p AVI and GIF")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not CLIPS.is_dir():
        print(f"error: {CLIPS} not found; set MCL_SHARED to the folder holding data/clips", file=sys.stderr)
        return 1
    files, n_clips = (QUICK_FILES, 8) if args.quick else (ALL_FILES, 40)
    rng = np.random.default_rng(args.seed)
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
