"""Tubelet loader benchmark: samples/s of the full MCL item, and how often the motion crop binds.

    python benchmarks/loader.py --quick [--bench DIR] [--real-cache CACHE --real-root DIR]

1. Generates a small built-in benchmark (`mcl synth`: 4 classes x 4 videos, 80 frames, 128 px) and
   prepares its motion cache (`mcl prepare`, DIS flow), unless ``--bench`` already holds them.
2. Times ``MCLPretrainDataset[i]`` with ``num_workers=0`` (four 16-frame clips at stride 2, 112 px, with
   the alignment target) against the same dataset with both motion switches off, interleaved in rounds
   so load on the shared machine hits both alike; then a DataLoader with 2 workers (batch 4, timed
   from the arrival of its first batch, so worker start-up is excluded).
3. Binding rate of the motion-focused crop: the fraction of crop draws where the first random position
   of the plain crop (same random draws) misses the required coverage r, so the motion crop changes
   the crop. Clips come from the motion-focused temporal sampler; nothing is decoded.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from mcl_video.data import find_videos
from mcl_video.motion.cache import CacheSettings, MotionCache
from mcl_video.motion.prepare import prepare
from mcl_video.sampling import MCLPretrainDataset, MotionFocusedCrop, MotionFocusedSampler
from mcl_video.sampling.dataset import video_id_of
from mcl_video.sampling.temporal import clip_frame_indices


def ensure_benchmark(bench: Path) -> tuple[Path, Path]:
    """``(video_root, cache)`` of the built-in benchmark in ``bench``, made if missing."""
    root, cache = bench / "videos", bench / "cache"
    if not root.exists():
        from mcl_video.data.synth import make_benchmark

        make_benchmark(bench, classes=4, train_per_class=4, test_per_class=1, frames=80, size=128)
    if not (cache / "meta.json").exists() or len(MotionCache(cache)) < len(find_videos(root)):
        prepare(root, cache, CacheSettings(), progress=False)
    return root, cache


def records_of(root: Path, cache: MotionCache) -> list[str]:
    """Relative paths of the videos under ``root`` that the cache holds."""
    rels = [str(p.relative_to(root)) for p in find_videos(root)]
    return [r for r in rels if video_id_of(r) in cache]


def time_items(ds: MCLPretrainDataset, indices: list[int]) -> float:
    """Seconds to build the items ``indices`` in this process."""
    start = time.perf_counter()
    for i in indices:
        ds[i]
    return time.perf_counter() - start


def loader_rates(root: Path, cache: MotionCache, samples: int, rounds: int, size: int) -> dict:
    records = records_of(root, cache)
    grid = (4, size // 16, size // 16)
    motion = MCLPretrainDataset(root, records, cache, {"size": size}, grid)
    plain = MCLPretrainDataset(root, records, cache,
                               {"size": size, "motion_sampling": False, "motion_crop": False}, grid)
    rng = np.random.default_rng(0)
    t_motion = t_plain = 0.0
    n = 0
    for r in range(rounds):
        idx = rng.integers(len(motion), size=samples).tolist()
        motion.set_epoch(r)
        plain.set_epoch(r)
        if r % 2:
            t_plain += time_items(plain, idx)
            t_motion += time_items(motion, idx)
        else:
            t_motion += time_items(motion, idx)
            t_plain += time_items(plain, idx)
        n += samples
    draws = RandomSampler(motion, replacement=True, num_samples=samples * rounds + 4,
                          generator=torch.Generator().manual_seed(0))
    loader = DataLoader(motion, batch_size=4, sampler=draws, num_workers=2)
    seen, start = 0, None
    for batch in loader:  # steady state: the clock starts when the first batch arrives
        if start is None:
            start = time.perf_counter()
            continue
        seen += batch["q"].shape[0]
        if seen >= samples * rounds:
            break
    t_loader = time.perf_counter() - start
    return {"videos": len(motion), "samples": n, "motion_per_s": n / t_motion,
            "plain_per_s": n / t_plain, "ratio": t_plain / t_motion,
            "loader2_per_s": seen / t_loader, "loader2_samples": seen}


def binding_rate(cache: MotionCache, video_ids: list[str], scale: tuple[float, float], draws: int,
                 seed: int = 0) -> dict:
    """Fractions of crop draws that are constrained (r > 0) and bound, over motion-focused clips."""
    sampler = MotionFocusedSampler(cache.clip_len, cache.stride, motion_prob=0.7)
    crop = MotionFocusedCrop(scale=scale)
    rng = np.random.default_rng(seed)
    constrained = bound = corner = total = 0
    for vid in video_ids:
        m = cache.get(vid)
        maps = np.asarray(m.frame_maps)
        for _ in range(draws):
            d = sampler.sample(m.num_frames, m.clip_scores, rng)
            for s in d.starts:
                idx = np.minimum(clip_frame_indices(s, cache.clip_len, cache.stride), len(maps) - 1)
                _, info = crop.sample_with_info(m.frame_hw, maps[idx].mean(axis=0), rng)
                total += 1
                constrained += info.required > 0
                bound += info.bound
                corner += info.fallback == "corner"
    return {"draws": total, "constrained": constrained / total, "bound": bound / total,
            "bound_if_constrained": bound / max(constrained, 1), "corner": corner / total}


def print_binding(name: str, cache: MotionCache, ids: list[str], draws: int) -> None:
    for scale in ((0.2, 1.0), (0.3, 1.0), (0.5, 1.0)):
        b = binding_rate(cache, ids, scale, draws)
        print(f"| {name} | {len(ids)} | {scale[0]}-{scale[1]} | {b['draws']} | {b['constrained']:.3f} | "
              f"{b['bound']:.3f} | {b['bound_if_constrained']:.3f} | {b['corner']:.3f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer samples (for CI-sized runs)")
    p.add_argument("--bench", type=Path, default=None, help="benchmark folder (made if missing)")
    p.add_argument("--real-cache", type=Path, default=None, help="motion cache of real clips")
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    samples, rounds, draws = (8, 2, 50) if args.quick else (16, 4, 200)
    bench = args.bench or Path(tempfile.mkdtemp(prefix="mcl-loader-bench-"))
    root, cache_dir = ensure_benchmark(bench)
    cache = MotionCache(cache_dir)
    r = loader_rates(root, cache, samples, rounds, args.size)
    print(f"benchmark: {bench} ({r['videos']} videos), {r['samples']} items per arm, size {args.size}")
    print("| loader | samples/s |\n| --- | --- |")
    print(f"| motion-focused, num_workers=0 | {r['motion_per_s']:.2f} |")
    print(f"| plain (both switches off), num_workers=0 | {r['plain_per_s']:.2f} |")
    print(f"| ratio motion / plain | {r['ratio']:.2f} |")
    print(f"| motion-focused, DataLoader 2 workers ({r['loader2_samples']} items) "
          f"| {r['loader2_per_s']:.2f} |")
    print("\n| clips | videos | crop scale | crop draws | constrained (r>0) | bound | bound if constrained "
          "| corner fall-back |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    print_binding("built-in benchmark", cache, cache.video_ids(), draws)
    if args.real_cache:
        real = MotionCache(args.real_cache)
        print_binding("shared/data/clips", real, real.video_ids(), draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
