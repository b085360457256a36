"""Optical-flow speed of each backend on real UCF101 frames: flow fields per second.

Frames of ../shared/data/clips/v_ApplyEyeMakeup_g01_c01.avi (UCF101, 320x240 XviD) are decoded once
(OpenCV) into memory; only flow is timed, streamed pair by pair through ``FlowEstimator``. Every backend
is measured in the same run, at 320x240 and at a reduced size (short side ``--small``, what a motion
cache may compute), with 1 and 2 OpenCV threads; each number is the best of ``--repeats`` runs (the
machine is shared), and the ratio to TV-L1 at the same setting is printed too.

    python benchmarks/flow_speed.py [--quick] [--raft-weights raft_small.pth] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from mcl_video.motion.flow import FlowEstimator

SHARED = Path(os.environ.get("MCL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CLIP = SHARED / "data" / "clips" / "v_ApplyEyeMakeup_g01_c01.avi"
CONFIGS = {  # label -> (backend, options, frames used in a full / quick run)
    "tvl1": ("tvl1", {}, 12, 4),
    "dis ultrafast": ("dis", {"preset": "ultrafast"}, 160, 40),
    "dis fast": ("dis", {"preset": "fast"}, 160, 40),
    "dis medium": ("dis", {"preset": "medium"}, 80, 20),
    "farneback": ("farneback", {}, 80, 20),
}


def decode(path: Path) -> np.ndarray:
    """Every frame of the video: N x H x W x 3 uint8 RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise FileNotFoundError(f"{path}: no frames decoded (is ../shared/data present? set MCL_SHARED)")
    return np.stack(frames)


def resize_short(frames: np.ndarray, short: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    scale = short / min(h, w)
    size = (round(w * scale), round(h * scale))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def frames_per_second(estimator: FlowEstimator, frames: np.ndarray, repeats: int) -> float:
    """Best-of-``repeats`` flow fields per second over ``frames`` (N frames -> N - 1 fields)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _flow in estimator.stream(frames):
            pass
        best = min(best, time.perf_counter() - start)
    return (len(frames) - 1) / best


def measure(configs: dict, videos: dict, threads_list: list[int], repeats: int, quick: bool) -> dict:
    """{size label: {threads: {backend label: fps}}}."""
    results: dict = {}
    for size, frames in videos.items():
        for threads in threads_list:
            row = results.setdefault(size, {}).setdefault(threads, {})
            for label, (backend, options, n_full, n_quick) in configs.items():
                estimator = FlowEstimator(backend, threads=threads, **options)
                estimator.pair(frames[0], frames[1])  # warm-up (allocations, lazy init)
                count = min(len(frames), n_quick if quick else n_full)
                row[label] = frames_per_second(estimator, frames[:count], repeats)
                print(f"  {size} threads={threads} {label:14s} {row[label]:8.1f} fields/s", flush=True)
    return results


def table(results: dict, threads_list: list[int]) -> str:
    head = " | ".join(f"{t} thr f/s | × TV-L1" for t in threads_list)
    lines = [f"| size | backend | {head} |", "| --- | --- |" + " --- | --- |" * len(threads_list)]
    for size, by_threads in results.items():
        for label in by_threads[threads_list[0]]:
            cells = []
            for t in threads_list:
                fps, ref = by_threads[t][label], by_threads[t].get("tvl1")
                cells.append(f"{fps:.1f} | {fps / ref:.0f}×" if ref else f"{fps:.1f} | –")
            lines.append(f"| {size} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, one repeat")
    parser.add_argument("--small", type=int, default=128, help="short side of the reduced size (0: skip)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raft-weights", help="local torchvision RAFT state dict (adds the raft backend)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    configs = dict(CONFIGS)
    if args.raft_weights:
        configs["raft"] = ("raft", {"weights": args.raft_weights}, 16, 4)
    frames = decode(CLIP)
    h, w = frames.shape[1:3]
    videos = {f"{w}x{h}": frames}
    if args.small:
        small = resize_short(frames, args.small)
        videos[f"{small.shape[2]}x{small.shape[1]}"] = small
    print(f"{CLIP.name}: {len(frames)} frames {w}x{h}; cv2 {cv2.__version__}, "
          f"{os.cpu_count()} CPUs", flush=True)
    results = measure(configs, videos, args.threads, 1 if args.quick else args.repeats, args.quick)
    print()
    print(table(results, args.threads))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
