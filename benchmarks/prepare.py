"""Benchmark ``mcl prepare`` and the motion cache.

    python benchmarks/prepare.py [--clips /work/shared/data/clips] [--synth] [--variants] \
        [--resize-short none]
    python benchmarks/prepare.py --side-by-side [--baseline-src DIR] [--rounds 2] [--copies 6]
    python benchmarks/prepare.py --baseline-src DIR [--crops 6] [--rounds 3]   # cache before/after
    python benchmarks/prepare.py --storage [--crops 6]   # field resolution x quantisation x packing
    python benchmarks/prepare.py --against-flow [--copies 6] [--rounds 3] [--profile OUT.prof]

Reports (markdown rows on stdout):
1. ``mcl prepare`` end to end on the real clips (and, with ``--synth``, on a small built-in benchmark):
   videos/s, frames/s, bytes per frame (all videos, and for the 320x240 UCF101 clips);
2. fidelity: Pearson correlation between alignment targets read from the cache and exact targets from
   full-resolution float flow (same backend), 16 frames at stride 2, random crops, grid 4x7x7;
3. read latency of one training sample's motion data (``cache.get`` + frame maps of 3 clips + one
   alignment target);
4. with ``--variants``: the same correlation and the bytes per frame for other stored representations
   and flow resolutions, on the two UCF101 clips (how the defaults were chosen).

Without ``--side-by-side``, ``--baseline-src DIR`` prepares the clips with both versions (each in its
own process) and prints, for both, the bytes per frame, the correlation over the same crops and the
read latency of one sample, measured in ``--rounds`` interleaved rounds (median of the round medians).

``--storage`` computes the stored fields of every clip in memory at several short sides and numbers of
levels and reports the bytes per frame of the entry they make (fields deflated per flow frame, float16
maps; and the previous format: 8-bit fields, everything uncompressed, or the whole file deflated) and
the correlation of their targets with the exact ones over the same crops.

``--side-by-side`` instead measures the speed of preparation against its flow on the two 320x240
UCF101 clips, per core (one OpenCV/BLAS thread, CPU time): DIS alone on the decoded gray frames, the
flow stage (``FlowEstimator.stream``), the motion maps alone on those flows, flow + maps on the same
decoded frames, and ``prepare`` end to end (decode, flow, maps, write). ``--baseline-src DIR`` (the
``src`` folder of another version, e.g. a ``git worktree`` of an older commit) runs every measurement
for that version too, each arm in its own process, arms interleaved over ``--rounds``. Then
``--workers 1`` vs ``--workers 2`` on ``--copies`` links of each clip: CPU time of the whole run
(workers included) and wall time.

``--against-flow`` measures ``prepare`` against its own flow the way a user's run sees it: in one child
process pinned to one core (``sched_setaffinity``, one OpenCV/BLAS thread; process start excluded), on
``--copies`` links of each of the two 320x240 UCF101 clips, the two arms interleaved over ``--rounds``:
"flow" = PyAV decoding (``iter_frames`` at the cache's ``resize_short``) + grayscale + DIS ``fast`` of
every pair, "prepare" = ``prepare(...)`` end to end into a fresh cache (decode, flow, maps, scores,
write). Frames per CPU second (best round) and their ratio; ``--profile OUT`` also writes a cProfile of
one ``prepare`` round and prints its top functions by own time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from mcl_video.cli import main as mcl
from mcl_video.data import read_clip, read_video_info
from mcl_video.motion import alignment_target
from mcl_video.motion.cache import CacheSettings, MotionCache, cache_stats, entry_path
from mcl_video.motion.flow import FlowEstimator
from mcl_video.motion.prepare import prepare

GRID = (4, 7, 7)
UCF_CLIPS = ("v_ApplyEyeMakeup_g01_c01.avi", "v_BaseballPitch_g01_c01.avi")
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def exact_flow(path: Path, idx: np.ndarray, resize_short: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Float DIS flow i -> i+1 at the sampled frames only: ``16 x H x W`` each."""
    n = read_video_info(path).num_frames
    frames = read_clip(path, np.concatenate([idx, np.minimum(idx + 1, n - 1)]), resize_short).numpy()
    est = FlowEstimator("dis")
    flows = [est.pair(frames[i], frames[i + len(idx)]) for i in range(len(idx))]
    return np.stack([f[0] for f in flows]), np.stack([f[1] for f in flows])


def _exact_target(path, idx, crop, frame_hw, resize_short):
    u, v = exact_flow(path, idx, resize_short)
    sy, sx = u.shape[1] / frame_hw[0], u.shape[2] / frame_hw[1]
    top, left, ch, cw = crop
    t, l, h, w = (int(round(x)) for x in (top * sy, left * sx, ch * sy, cw * sx))
    return alignment_target(u[:, t:t + h, l:l + w], v[:, t:t + h, l:l + w], GRID)


def correlations(cache_dir: Path, paths: dict[str, Path], crops: int, seed: int = 0) -> dict[str, list]:
    """Per video and random crop: (corr vs exact at the cache's flow size, corr vs exact at source size)."""
    cache = MotionCache(cache_dir)
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for vid, path in paths.items():
        vm = cache.get(vid)
        h, w = vm.frame_hw
        with np.load(entry_path(cache_dir, vid)) as z:
            resize = json.loads(str(z["info"])).get("resize_short")
        out[vid] = []
        for _ in range(crops):
            start = int(rng.integers(0, max(1, vm.num_frames - 32)))
            idx = np.minimum(start + 2 * np.arange(16), vm.num_frames - 2)
            area, aspect = rng.uniform(0.2, 1.0) * h * w, np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            ch, cw = min(h, int(round(np.sqrt(area / aspect)))), min(w, int(round(np.sqrt(area * aspect))))
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            approx = vm.alignment_target(idx, (top, left, ch, cw), GRID).ravel()
            same = _exact_target(path, idx, (top, left, ch, cw), (h, w), resize).ravel()
            crop = (top, left, ch, cw)
            full = same if resize is None else _exact_target(path, idx, crop, (h, w), None).ravel()
            out[vid].append((float(np.corrcoef(same, approx)[0, 1]), float(np.corrcoef(full, approx)[0, 1])))
    return out


def read_latency(cache_dir: Path, repeats: int = 50, cpu: list | None = None) -> float:
    """Median ms for one sample: get + mean 7x7 map of 3 clips + one alignment target (``cpu``, when
    given, receives the mean CPU ms per sample of this process)."""
    cache = MotionCache(cache_dir)
    ids = cache.video_ids()
    rng = np.random.default_rng(0)
    times = []
    cpu0 = time.process_time()
    for r in range(repeats):
        t0 = time.perf_counter()
        vm = cache.get(ids[r % len(ids)])
        starts = rng.integers(0, max(1, vm.num_frames - 32), size=3)
        _ = [vm.frame_maps[np.minimum(s + 2 * np.arange(16), vm.num_frames - 1)].mean(0) for s in starts]
        h, w = vm.frame_hw
        vm.alignment_target(starts[0] + 2 * np.arange(16), (0, 0, h * 0.7, w * 0.7), GRID)
        times.append(time.perf_counter() - t0)
    if cpu is not None:
        cpu.append(1000 * (time.process_time() - cpu0) / repeats)
    return 1000 * float(np.median(times))


def run_cli(root: Path, out: Path, extra: list[str]) -> tuple[int, float]:
    t0 = time.perf_counter()
    status = mcl(["prepare", str(root), "--out", str(out), "--no-progress", *extra])
    return status, time.perf_counter() - t0


def bytes_per_frame(cache_dir: Path, ids: list[str]) -> float:
    cache = MotionCache(cache_dir)
    size = sum(entry_path(cache_dir, i).stat().st_size for i in ids)
    return size / sum(cache.get(i).num_frames for i in ids)


def bench_clips(clips: Path, tmp: Path, crops: int, resize_short: str | None = None) -> None:
    out = tmp / "clips_cache"
    status, secs = run_cli(clips, out, [] if resize_short is None else ["--resize-short", resize_short])
    stats = cache_stats(MotionCache(out))
    ucf = [i for i in MotionCache(out).video_ids() if i.startswith("v_") and i.endswith("_c01")]
    what = "defaults" if resize_short is None else f"--resize-short {resize_short}"
    print(f"\nmcl prepare {clips} (dis, {what}): exit {status}, {stats['videos']} videos, "
          f"{stats['frames']} frames in {secs:.1f} s = {stats['videos'] / secs:.2f} videos/s, "
          f"{stats['frames'] / secs:.1f} frames/s; {stats['bytes_per_frame']:.0f} B/frame overall"
          + (f", {bytes_per_frame(out, ucf):.0f} B/frame on the 320x240 UCF101 clips" if ucf else ""))
    print(f"read latency per training sample: {read_latency(out):.2f} ms (median)")
    paths = {i: p for i in MotionCache(out).video_ids() for p in clips.glob(i + ".*")}
    corr = correlations(out, paths, crops)
    print("\n| clip | corr. vs exact at the cached flow size | corr. vs exact at source size |\n"
          "| --- | --- | --- |")
    for vid, c in corr.items():
        print(f"| {vid} | {', '.join(f'{x[0]:.3f}' for x in c)} | {', '.join(f'{x[1]:.3f}' for x in c)} |")
    for k, name in ((0, "cached flow size"), (1, "source size")):
        allc = [x[k] for c in corr.values() for x in c]
        print(f"all {len(allc)} crops vs exact at {name}: mean {np.mean(allc):.3f}, median "
              f"{np.median(allc):.3f}, min {np.min(allc):.3f}")


def bench_variants(clips: Path, tmp: Path, crops: int) -> None:
    root = tmp / "ucf"
    root.mkdir()
    for name in ("v_ApplyEyeMakeup_g01_c01.avi", "v_BaseballPitch_g01_c01.avi"):
        os.symlink(clips / name, root / name)
    paths = {p.stem: p for p in root.iterdir()}
    print("\n| stored, short side | flow short side | B/frame | corr mean | corr min | prepare s |\n"
          "| --- | --- | --- | --- | --- | --- |")
    variants = [("derivatives", 24, 240), ("flow", 34, 240), ("derivatives", 16, 240),
                ("derivatives", 32, 240), ("derivatives", 24, 128)]
    for rep, short, resize in variants:
        out = tmp / f"v_{rep}_{short}_{resize}"
        t0 = time.perf_counter()
        prepare(root, out, CacheSettings(representation=rep, field_short=short, resize_short=resize),
                progress=False)
        secs = time.perf_counter() - t0
        c = [x[1] for v in correlations(out, paths, crops).values() for x in v]
        print(f"| {rep} {short} | {resize} | {bytes_per_frame(out, list(paths)):.0f} | {np.mean(c):.3f} | "
              f"{np.min(c):.3f} | {secs:.1f} |")


def cache_arm(clips: Path, out: Path, crops: int) -> dict:
    """One version's cache on the clips (run in a child): bytes/frame, correlations (vs exact at the
    cached flow size)."""
    prepare(clips, out, progress=False)
    cache = MotionCache(out)
    ucf = [i for i in cache.video_ids() if i.startswith("v_") and i.endswith("_c01")]
    paths = {i: p for i in cache.video_ids() for p in clips.glob(i + ".*")}
    corr = [x[0] for c in correlations(out, paths, crops).values() for x in c]
    return {"bpf": cache_stats(cache)["bytes_per_frame"], "bpf_ucf": bytes_per_frame(out, ucf), "corr": corr}


def bench_cache_versions(clips: Path, tmp: Path, baseline: Path, crops: int, rounds: int) -> None:
    arms = {"before (baseline)": baseline.resolve(),
            "this version": Path(__file__).resolve().parents[1] / "src"}
    rows: dict[str, dict] = {}
    for name, src in arms.items():
        out = tmp / name.split()[0]
        rows[name] = json.loads(_child(src, ["--cache-arm", str(out), "--clips", str(clips),
                                             "--crops", str(crops)])[0].strip().splitlines()[-1])
        rows[name]["ms"], rows[name]["cpu"] = [], []
    for _ in range(rounds):
        for name, src in arms.items():
            wall, cpu = json.loads(_child(src, ["--read-latency", str(tmp / name.split()[0])])[0])
            rows[name]["ms"].append(wall)
            rows[name]["cpu"].append(cpu)
    print(f"\n{len(rows['this version']['corr'])} crops (16 frames at stride 2, grid 4x7x7), read latency: "
          f"median of {rounds} interleaved rounds of 200 samples (wall: median sample; CPU: mean)\n\n"
          "| version | B/frame, all clips | B/frame, 320x240 UCF101 | corr. mean | corr. median | corr. min "
          "| read ms (wall) | read ms (CPU) |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        c = np.asarray(r["corr"])
        print(f"| {name} | {r['bpf']:.0f} | {r['bpf_ucf']:.0f} | {c.mean():.4f} | {np.median(c):.4f} | "
              f"{c.min():.4f} | {np.median(r['ms']):.2f} | {np.median(r['cpu']):.2f} |")


def _clip_derivatives(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flow at the cache's default resize and its full-resolution Prewitt derivatives ``4 x F x H x W``."""
    from mcl_video.data import iter_frames
    from mcl_video.motion.maps import boundary_derivatives

    resize = CacheSettings().resize_short
    info = read_video_info(path)
    flows = list(FlowEstimator("dis").stream(iter_frames(path, resize if min(info.height, info.width) > resize
                                                         else None)))
    u, v = np.stack([f[0] for f in flows]), np.stack([f[1] for f in flows])
    return u, v, boundary_derivatives(u, v)


def _ms(fn, arg, repeats: int = 20) -> float:
    """Median wall ms of ``fn(arg)``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def bench_storage(clips: Path, crops: int) -> None:
    import cv2

    from mcl_video.motion.cache import VideoMotion, quantise
    from mcl_video.motion.fields import field_hw, pack_fields

    variants = [(24, 127), (24, 31), (24, 15), (20, 31), (20, 63), (16, 127)]
    rng = np.random.default_rng(0)
    rows: dict[tuple, dict[str, list]] = {}
    for path in sorted(p for p in clips.iterdir() if p.suffix in (".avi", ".mp4", ".gif")):
        u, v, d = _clip_derivatives(path)
        f, h, w = u.shape
        draws = []
        for _ in range(crops):
            idx = np.minimum(int(rng.integers(0, max(1, f + 1 - 32))) + 2 * np.arange(16), f - 1)
            area, aspect = rng.uniform(0.2, 1.0) * h * w, np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            ch, cw = min(h, int(round(np.sqrt(area / aspect)))), min(w, int(round(np.sqrt(area * aspect))))
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            box = (idx, slice(top, top + ch), slice(left, left + cw))
            draws.append((idx, (top, left, ch, cw), alignment_target(u[box], v[box], GRID).ravel()))
        info = {"num_frames": f + 1, "frame_hw": [h, w], "representation": "derivatives"}
        for short, levels in variants:
            fh, fw = field_hw((h, w), short)
            small = np.stack([[cv2.resize(x, (fw, fh), interpolation=cv2.INTER_AREA) for x in p] for p in d])
            pairs = [quantise(small[:, i], levels) for i in range(f)]
            q, scales = np.stack([p[0] for p in pairs], axis=1), np.stack([p[1] for p in pairs], axis=1)
            vm = VideoMotion({"frame_maps": np.zeros((f + 1, 7, 7), np.float32), "fields": q,
                              "scales": scales, "clip_scores": np.zeros(1, np.float32)}, info)
            keys = ("frame", "plain", "whole", "corr", "ucf", "zeros", "ms_whole", "ms_16")
            row = rows.setdefault((short, levels), {k: [] for k in keys})
            row["corr"] += [float(np.corrcoef(ex, vm.alignment_target(ix, c, GRID).ravel())[0, 1])
                            for ix, c, ex in draws]
            row["frame"].append(pack_fields(q)[0].size / (f + 1))
            row["plain"].append(q.size / (f + 1))
            frame_major = np.ascontiguousarray(q.transpose(1, 0, 2, 3)).tobytes()
            whole = zlib.compress(frame_major, 6)
            row["whole"].append(len(whole) / (f + 1))
            row["zeros"].append(float(np.mean(q == 0)))
            idx16 = np.minimum(2 * np.arange(16), f - 1)
            row["ms_whole"].append(_ms(zlib.decompress, whole))
            row["ms_16"].append(_ms(vm.field_frames, idx16))
            row["ucf"].append(path.name.startswith("v_") and path.suffix == ".avi")
    print(f"\n{crops} crops per clip, corr. vs exact at the cached flow size; fields B/frame on the 320x240 "
          "UCF101 clips (all clips)\n\n| short side | levels | fields uncompressed | whole video deflated "
          "| each flow frame deflated | corr. mean | corr. min | zeros | inflate ms: whole video / 16 flow "
          "frames |\n|---|---|---|---|---|---|---|---|---|")
    for (short, levels), r in rows.items():
        ucf = np.asarray(r["ucf"])
        cells = [f"{np.asarray(r[k])[ucf].mean():.0f} ({np.mean(r[k]):.0f})"
                 for k in ("plain", "whole", "frame")]
        print(f"| {short} | ±{levels} | " + " | ".join(cells)
              + f" | {np.mean(r['corr']):.4f} | {np.min(r['corr']):.4f} | {np.mean(r['zeros']):.0%} | "
              f"{np.mean(r['ms_whole']):.2f} / {np.mean(r['ms_16']):.2f} |")


def bench_synth(tmp: Path) -> None:
    from mcl_video.data.synth import make_benchmark

    bench = make_benchmark(tmp / "synth", classes=4, train_per_class=4, test_per_class=1, workers=1)
    status, secs = run_cli(bench / "videos", tmp / "synth_cache", [])
    stats = cache_stats(MotionCache(tmp / "synth_cache"))
    print(f"\nmcl prepare built-in benchmark (4 classes x 5 videos, 48 frames, 96 px): exit {status}, "
          f"{stats['videos'] / secs:.2f} videos/s, {stats['frames'] / secs:.1f} frames/s, "
          f"{stats['bytes_per_frame']:.0f} B/frame")


def _cpu_rate(frames: int, run) -> float:
    """Frames per CPU second of ``run()`` in this process (best of 2)."""
    best = float("inf")
    for _ in range(2):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return frames / best


def measure_arm(clips: Path) -> dict[str, float]:
    """One version's per-core rates (frames/s of CPU time) on the 320x240 UCF101 clips; run in a child."""
    import cv2

    from mcl_video.data import read_frames
    from mcl_video.motion.prepare import _MotionAccumulator

    cv2.setNumThreads(1)
    videos = [read_frames(clips / name) for name in UCF_CLIPS]
    frames = sum(len(v) for v in videos)
    grays = [[cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in v] for v in videos]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    settings = CacheSettings()

    def calc():
        for g in grays:
            for a, b in zip(g[:-1], g[1:]):
                dis.calc(a, b, None)

    def stream():
        return [list(FlowEstimator("dis").stream(v)) for v in videos]

    flows = stream()

    def maps(per_video):
        for fl in per_video:
            acc = _MotionAccumulator(settings, fl[0][0].shape)
            for u, v in fl:
                acc.push(u, v)
            acc.finish()

    def flow_and_maps():
        for v in videos:
            acc = None
            for u, w in FlowEstimator("dis").stream(v):
                acc = acc or _MotionAccumulator(settings, u.shape)
                acc.push(u, w)
            acc.finish()

    def end_to_end():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "clips"
            root.mkdir()
            for name in UCF_CLIPS:
                os.symlink(clips / name, root / name)
            prepare(root, Path(tmp) / "cache", settings, progress=False)

    return {"dis_calc": _cpu_rate(frames, calc), "flow_stage": _cpu_rate(frames, stream),
            "maps": _cpu_rate(frames, lambda: maps(flows)), "flow_and_maps": _cpu_rate(frames, flow_and_maps),
            "prepare": _cpu_rate(frames, end_to_end), "frames": frames}


def _child(src: Path, args: list[str]) -> tuple[str, float, float]:
    """Run this script with ``src`` first on the path -> (stdout, CPU s incl. grandchildren, wall s)."""
    env = dict(os.environ, PYTHONPATH=str(src), **SINGLE_THREAD)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], env=env, check=True, capture_output=True,
                         text=True).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu, wall


def bench_side_by_side(clips: Path, tmp: Path, baseline: Path | None, rounds: int, copies: int) -> None:
    arms = {"this version": Path(__file__).resolve().parents[1] / "src"}
    if baseline is not None:
        arms["baseline"] = baseline.resolve()
    rates: dict[str, list[dict]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, src in arms.items():
            out, _, _ = _child(src, ["--measure-arm", "--clips", str(clips)])
            rates[name].append(json.loads(out.strip().splitlines()[-1]))
    keys = ("dis_calc", "flow_stage", "maps", "flow_and_maps", "prepare")
    print(f"\nper-core rates, frames/s of CPU time (best of {rounds} rounds x 2), "
          f"{rates['this version'][0]['frames']} frames of the two 320x240 UCF101 clips:\n")
    print("| version | DIS calc only | flow stage | maps only | flow + maps | prepare end to end | "
          "flow + maps / DIS | prepare / DIS |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in rates.items():
        best = {k: max(r[k] for r in runs) for k in keys}
        ratios = best["flow_and_maps"] / best["dis_calc"], best["prepare"] / best["dis_calc"]
        print(f"| {name} | " + " | ".join(f"{best[k]:.0f}" for k in keys)
              + f" | {ratios[0]:.2f} | {ratios[1]:.2f} |")
    root = tmp / "copies"
    root.mkdir()
    for name in UCF_CLIPS:
        for i in range(copies):
            os.symlink(clips / name, root / f"{Path(name).stem}_{i}{Path(name).suffix}")
    print(f"\nworkers on {2 * copies} videos (links to the two clips), best of {rounds} interleaved rounds: "
          "CPU s incl. workers, wall s, efficiency = CPU(1 worker) / CPU(2 workers)\n\n| version | "
          "1 worker CPU | 1 worker wall | 2 workers CPU | 2 workers wall | CPU efficiency | wall speed-up |"
          "\n| --- | --- | --- | --- | --- | --- | --- |")
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(rounds):
        for name, src in arms.items():
            for workers in (1, 2):
                out_dir = tmp / f"cache_{r}_{workers}_{name.replace(' ', '_')}"
                runs.setdefault((name, workers), []).append(
                    _child(src, ["--run-prepare", str(root), str(out_dir), str(workers)])[1:])
    for name in arms:
        (c1, w1), (c2, w2) = (tuple(min(x) for x in zip(*runs[name, w])) for w in (1, 2))
        print(f"| {name} | {c1:.1f} | {w1:.1f} | {c2:.1f} | {w2:.1f} | {c1 / c2:.2f} | {w1 / w2:.2f} |")


def against_flow_arm(clips: Path, copies: int, rounds: int, profile: str | None) -> dict:
    """Child of ``--against-flow``: both arms, interleaved, on one core."""
    import cProfile
    import pstats

    import cv2

    from mcl_video.data import iter_frames

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    settings = CacheSettings()
    tmp = Path(tempfile.mkdtemp())
    root = tmp / "copies"
    root.mkdir()
    for name in UCF_CLIPS:
        for i in range(copies):
            os.symlink(clips / name, root / f"{Path(name).stem}_{i}{Path(name).suffix}")
    videos = sorted(root.iterdir())
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def flow() -> int:
        n = 0
        for path in videos:
            info = read_video_info(path)
            resize = settings.resize_short if min(info.height, info.width) > settings.resize_short else None
            prev = None
            for frame in iter_frames(path, resize_short=resize):
                gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
                if prev is not None:
                    dis.calc(prev, gray, None)
                prev, n = gray, n + 1
        return n

    def prep(out: Path) -> int:
        return prepare(root, out, settings, progress=False).frames

    cpu: dict[str, list[float]] = {"flow": [], "prepare": []}
    wall: dict[str, list[float]] = {"flow": [], "prepare": []}
    frames = {}
    for r in range(rounds):
        for arm in ("flow", "prepare"):
            c0, w0 = time.process_time(), time.perf_counter()
            frames[arm] = flow() if arm == "flow" else prep(tmp / f"cache_{r}")
            cpu[arm].append(time.process_time() - c0)
            wall[arm].append(time.perf_counter() - w0)
    top = []
    if profile:
        prof = cProfile.Profile()
        prof.runcall(prep, tmp / "cache_profile")
        prof.dump_stats(profile)
        stats = pstats.Stats(prof).sort_stats("tottime")
        total = sum(v[2] for v in stats.stats.values())
        for (file, line, fn), (_, _, tt, ct, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]:
            top.append([f"{Path(file).name}:{line}({fn})", round(tt, 3), round(ct, 3), round(tt / total, 3)])
    return {"frames": frames, "cpu": cpu, "wall": wall, "top": top}


def bench_against_flow(clips: Path, copies: int, rounds: int, profile: str | None) -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    extra = ["--profile", profile] if profile else []
    out, _, _ = _child(src, ["--against-flow-arm", "--clips", str(clips), "--copies", str(copies),
                             "--rounds", str(rounds), *extra])
    r = json.loads(out.strip().splitlines()[-1])
    n = r["frames"]["prepare"]
    rate = {arm: n / min(r["cpu"][arm]) for arm in ("flow", "prepare")}
    wall = {arm: n / min(r["wall"][arm]) for arm in ("flow", "prepare")}
    print(f"\none core, {2 * copies} videos ({copies} links to each 320x240 UCF101 clip), {n} frames, "
          f"best of {rounds} interleaved rounds\n")
    print("| arm | frames per CPU s | frames per wall s |\n| --- | --- | --- |")
    for arm, label in (("flow", "decode + grayscale + DIS fast"), ("prepare", "prepare end to end")):
        print(f"| {label} | {rate[arm]:.0f} | {wall[arm]:.0f} |")
    ratio = rate["prepare"] / rate["flow"], wall["prepare"] / wall["flow"]
    print(f"| prepare / flow | {ratio[0]:.2f} | {ratio[1]:.2f} |")
    if r["top"]:
        print("\none prepare round under cProfile, by own time:\n\n"
              "| function | own s | cumulative s | share |\n| --- | --- | --- | --- |")
        for name, tt, ct, share in r["top"]:
            print(f"| {name} | {tt:.3f} | {ct:.3f} | {share:.1%} |")


def run_prepare(root: str, out: str, workers: int) -> None:
    """``prepare`` with one OpenCV thread per process (the per-core comparison of ``--side-by-side``)."""
    import cv2

    cv2.setNumThreads(1)
    summary = prepare(root, out, workers=workers, progress=False)
    print(json.dumps({"frames": summary.frames, "prepared": summary.prepared}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path("/work/shared/data/clips"))
    parser.add_argument("--crops", type=int, default=3, help="random crops per video for the correlation")
    parser.add_argument("--synth", action="store_true", help="also prepare a small built-in benchmark")
    parser.add_argument("--variants", action="store_true", help="compare stored representations")
    parser.add_argument("--resize-short", default=None,
                        help="passed to mcl prepare for the clips (e.g. 'none': flow at full resolution)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="speed of preparation vs its flow per core, and --workers 1 vs 2")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="the src folder of a version to compare against (with --side-by-side: "
                        "speed; without: the cache's bytes, fidelity and read latency)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (speed, or read latency)")
    parser.add_argument("--copies", type=int, default=6, help="with --side-by-side: links per clip")
    parser.add_argument("--storage", action="store_true", help="compare field sizes, levels and packing")
    parser.add_argument("--against-flow", action="store_true",
                        help="prepare vs decode + grayscale + DIS on one core, same frames")
    parser.add_argument("--profile", default=None, help="with --against-flow: write a cProfile here")
    parser.add_argument("--against-flow-arm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure-arm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-arm", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--read-latency", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-prepare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.against_flow_arm:
        print(json.dumps(against_flow_arm(args.clips, args.copies, args.rounds, args.profile)))
        return
    if args.against_flow:
        bench_against_flow(args.clips, args.copies, args.rounds, args.profile)
        return
    if args.measure_arm:
        print(json.dumps(measure_arm(args.clips)))
        return
    if args.cache_arm:
        print(json.dumps(cache_arm(args.clips, args.cache_arm, args.crops)))
        return
    if args.read_latency:
        cpu: list[float] = []
        print(json.dumps([read_latency(args.read_latency, 200, cpu), cpu[0]]))
        return
    if args.storage:
        bench_storage(args.clips, args.crops)
        return
    if args.run_prepare:
        run_prepare(args.run_prepare[0], args.run_prepare[1], int(args.run_prepare[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.side_by_side:
            bench_side_by_side(args.clips, Path(tmp), args.baseline_src, args.rounds, args.copies)
            return
        if args.baseline_src is not None:
            bench_cache_versions(args.clips, Path(tmp), args.baseline_src, args.crops, args.rounds)
            return
        bench_clips(args.clips, Path(tmp), args.crops, args.resize_short)
        if args.synth:
            bench_synth(Path(tmp))
        if args.variants:
            bench_variants(args.clips, Path(tmp), args.crops)


if __name__ == "__main__":
    main()
