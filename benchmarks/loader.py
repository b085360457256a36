"""Tubelet loader benchmark: samples/s of the full MCL item, and how often the motion crop binds.

    python benchmarks/loader.py --quick [--bench DIR] [--real-cache CACHE --real-root DIR [--transcoded DIR]]
    python benchmarks/loader.py --persistent [--bench DIR] [--workers 2] [--epochs 6] [--rounds 3]

1. Generates a small built-in benchmark (`mcl synth`: 4 classes x 4 videos, 80 frames, 128 px) and
   prepares its motion cache (`mcl prepare`, DIS flow), unless ``--bench`` already holds them.
2. Times ``MCLPretrainDataset[i]`` with ``num_workers=0`` (four 16-frame clips at stride 2, 112 px, with
   the alignment target) against the same dataset with both motion switches off, interleaved in rounds
   so load on the shared machine hits both alike; then a DataLoader with 2 workers (batch 4, timed
   from the arrival of its first batch, so worker start-up is excluded).
3. Where the augmentation runs, side by side on one core (``torch.set_num_threads(1)``), arms
   interleaved in rounds: the per-sample path (the whole augmentation of the four views on the worker,
   ``ClipAugment.apply``; what the loader did before) against the item the dataset returns now
   (geometric part only, uint8, plus the drawn parameters), and the cost per sample of the batched
   photometric part (``augment_batch``, batches of 8) on this CPU and, when there is one, on CUDA.
   On the built-in benchmark and, with ``--real-root``/``--real-cache``, on real clips.
4. Binding rate of the motion-focused crop: the fraction of crop draws where the first random position
   of the plain crop (same random draws) misses the required coverage r, so the motion crop changes
   the crop. Clips come from the motion-focused temporal sampler; nothing is decoded.

``--persistent`` times the training loaders (``mcl_video.training.loader.build_epoch_loader``) over
``--epochs`` short epochs of the built-in benchmark (16 videos, batch 4: 4 batches per epoch), workers
restarted every epoch (``persistent=False``, what the training loops did before) against one
persistent loader for the run, arms interleaved over ``--rounds``; wall time from building the first
epoch's loader to the last batch, worker start-up included (that is the difference). Both arms must
deliver the same batches (checked).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate

from mcl_video.data import find_videos, read_clip, video_id
from mcl_video.motion.cache import CacheSettings, MotionCache
from mcl_video.motion.prepare import prepare
from mcl_video.sampling import MCLPretrainDataset, MotionFocusedCrop, MotionFocusedSampler
from mcl_video.sampling.dataset import VIEW_CLIP, VIEWS, _rescale_params
from mcl_video.sampling.photometric import augment_batch
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
    return [r for r in rels if video_id(r) in cache]


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


def per_sample_item(ds: MCLPretrainDataset, index: int) -> dict:
    """The item with the whole augmentation applied per sample on the worker (the path before the split)."""
    plan = ds.plan(index, ds.rng(index))
    frames = read_clip(plan.path, np.concatenate(plan.indices), ds.config.resize_short)
    clips = frames.permute(0, 3, 1, 2).split(ds.config.clip_len)
    item = {}
    for name, clip, p in zip(VIEWS, VIEW_CLIP, plan.params, strict=True):
        p = _rescale_params(p, plan.frame_hw, tuple(clips[clip].shape[-2:]))
        item[name] = ds.augment.apply(clips[clip], p).permute(1, 0, 2, 3).contiguous()
    item["target"] = ds.query_target(plan)
    return item


def augmentation_rates(root: Path, cache: MotionCache, samples: int, rounds: int, size: int,
                       batch: int = 8) -> dict:
    """Items/s of the per-sample path and of the geometric-only item (overall and per video: every
    round visits every video equally often, arms interleaved), and the batched part's cost."""
    ds = MCLPretrainDataset(root, records_of(root, cache), cache, {"size": size}, (4, size // 16, size // 16))
    rng = np.random.default_rng(1)
    per_video = {v[0]: {"before": 0.0, "after": 0.0, "n": 0} for v in ds.videos}
    arms = [("before", lambda i: per_sample_item(ds, i)), ("after", ds.__getitem__)]
    for r in range(rounds):
        idx = rng.permutation(np.repeat(np.arange(len(ds)), max(1, samples // len(ds)))).tolist()
        ds.set_epoch(r)
        for name, fn in arms if r % 2 == 0 else arms[::-1]:
            for i in idx:
                start = time.perf_counter()
                fn(i)
                per_video[ds.videos[i][0]][name] += time.perf_counter() - start
        for i in idx:
            per_video[ds.videos[i][0]]["n"] += 1
    n = sum(v["n"] for v in per_video.values())
    t_before = sum(v["before"] for v in per_video.values())
    t_after = sum(v["after"] for v in per_video.values())
    batches = [default_collate([ds[int(i)] for i in rng.integers(len(ds), size=batch)]) for _ in range(3)]
    out = {"videos": len(ds), "samples": n, "before_per_s": n / t_before, "after_per_s": n / t_after,
           "cpu_ms": 1000 * photometric_seconds(batches, torch.device("cpu")) / batch, "batch": batch,
           "per_video": {rel: (tuple(cache.get(video_id(rel)).frame_hw), v)
                         for rel, v in per_video.items()}}
    if torch.cuda.is_available():
        out["cuda_ms"] = 1000 * photometric_seconds(batches, torch.device("cuda")) / batch
        out["cuda_name"] = torch.cuda.get_device_name()
    return out


def print_per_video(a: dict) -> None:
    print("\n| video | frame (cache) | per-sample path, ms/item | geometric item, ms/item | ratio |"
          "\n| --- | --- | --- | --- | --- |")
    for rel, (hw, v) in a["per_video"].items():
        before, after = 1000 * v["before"] / v["n"], 1000 * v["after"] / v["n"]
        print(f"| {rel} | {hw[1]}x{hw[0]} | {before:.0f} | {after:.0f} | {before / after:.2f} |")


def photometric_seconds(batches: list[dict], device: torch.device, repeats: int = 3) -> float:
    """Median seconds of ``augment_batch`` on one batch already on ``device`` (first call is warm-up)."""
    moved = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    times = []
    for r in range(repeats + 1):
        for b in moved:
            start = time.perf_counter()
            augment_batch(b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def print_augmentation(name: str, a: dict) -> None:
    cpu_total = 1.0 / (1.0 / a["after_per_s"] + a["cpu_ms"] / 1000)
    print(f"| {name} ({a['videos']} videos, {a['samples']} items per arm) | {a['before_per_s']:.2f} | "
          f"{a['after_per_s']:.2f} | {a['after_per_s'] / a['before_per_s']:.2f} | {a['cpu_ms']:.1f} | "
          f"{cpu_total:.2f} ({cpu_total / a['before_per_s']:.2f}x) | "
          + (f"{a['cuda_ms']:.2f} ({a['cuda_name']})" if "cuda_ms" in a else "no CUDA") + " |")


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


def augmentation_section(args, root: Path, cache: MotionCache, samples: int, rounds: int) -> None:
    print("\n| clips | per-sample path, items/s | geometric item, items/s | ratio | batched photometric, "
          "CPU ms/item | geometric + batched on the same core, items/s | batched photometric, CUDA ms/item |"
          "\n| --- | --- | --- | --- | --- | --- | --- |")
    print_augmentation("built-in benchmark", augmentation_rates(root, cache, samples, rounds, args.size))
    if args.real_root and args.real_cache:
        real = augmentation_rates(args.real_root, MotionCache(args.real_cache), samples, rounds, args.size)
        print_augmentation("shared/data/clips", real)
        copies = None
        if args.transcoded:  # the same videos as `mcl transcode` copies (same ids, so the same cache)
            cache = MotionCache(args.real_cache)
            copies = augmentation_rates(args.transcoded, cache, samples, rounds, args.size)
            print_augmentation("shared/data/clips, `mcl transcode` copies", copies)
        print_per_video(real)
        if copies:
            print_per_video(copies)


def persistent_rates(root: Path, cache: MotionCache, workers: int, epochs: int, rounds: int,
                     size: int) -> dict:
    from mcl_video.training.distributed import ResumableShardSampler
    from mcl_video.training.loader import build_epoch_loader, close_epoch_loader

    ds = MCLPretrainDataset(root, records_of(root, cache), cache, {"size": size}, (4, size // 16, size // 16))
    seconds: dict[str, list[float]] = {"fresh": [], "persistent": []}
    sums: dict[str, list[float]] = {}
    for r in range(rounds):
        for arm in ("fresh", "persistent") if r % 2 == 0 else ("persistent", "fresh"):
            sampler = ResumableShardSampler(len(ds), 4, seed=0)
            got, n = [], 0
            start = time.perf_counter()
            for epoch in range(epochs):
                loader = build_epoch_loader(ds, sampler, epoch, batch_size=4, num_workers=workers, seed=epoch,
                                            persistent=arm == "persistent")
                for batch in loader:
                    got.append(float(batch["q"].double().sum()))
                    n += batch["q"].shape[0]
            seconds[arm].append(time.perf_counter() - start)
            close_epoch_loader(sampler)
            sums.setdefault(arm, got)
            if got != sums[arm]:
                raise SystemExit(f"loader benchmark: the {arm} arm delivered different batches across rounds")
    if sums["fresh"] != sums["persistent"]:
        raise SystemExit("loader benchmark: persistent and fresh workers delivered different batches")
    fresh, persistent = (float(np.median(seconds[a])) for a in ("fresh", "persistent"))
    return {"videos": len(ds), "samples": n, "fresh_per_s": n / fresh, "persistent_per_s": n / persistent,
            "seconds": seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer samples (for CI-sized runs)")
    p.add_argument("--bench", type=Path, default=None, help="benchmark folder (made if missing)")
    p.add_argument("--real-cache", type=Path, default=None, help="motion cache of real clips")
    p.add_argument("--real-root", type=Path, default=None, help="folder of the real clips")
    p.add_argument("--transcoded", type=Path, default=None,
                   help="`mcl transcode` copies of --real-root: the augmentation rows for them too")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--augmentation-only", action="store_true", help="only the per-sample vs batched section")
    p.add_argument("--persistent", action="store_true", help="persistent vs per-epoch loader workers")
    p.add_argument("--workers", type=int, default=2, help="with --persistent: loader workers")
    p.add_argument("--epochs", type=int, default=6, help="with --persistent: epochs per arm and round")
    p.add_argument("--rounds", type=int, default=3, help="with --persistent: interleaved rounds")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    samples, rounds, draws = (8, 2, 50) if args.quick else (16, 4, 200)
    bench = args.bench or Path(tempfile.mkdtemp(prefix="mcl-loader-bench-"))
    root, cache_dir = ensure_benchmark(bench)
    cache = MotionCache(cache_dir)
    if args.persistent:
        r = persistent_rates(root, cache, args.workers, args.epochs, args.rounds, args.size)
        print(f"benchmark: {bench} ({r['videos']} videos, batch 4), {args.epochs} epochs per arm, "
              f"{args.workers} workers, median of {args.rounds} interleaved rounds; the same batches in "
              "both arms")
        print("| loader | samples/s (worker start-up included) |\n| --- | --- |")
        print(f"| workers restarted every epoch | {r['fresh_per_s']:.2f} |")
        print(f"| persistent workers | {r['persistent_per_s']:.2f} |")
        print(f"| persistent / restarted | {r['persistent_per_s'] / r['fresh_per_s']:.2f} |")
        return 0
    if args.augmentation_only:
        augmentation_section(args, root, cache, samples, rounds)
        return 0
    r = loader_rates(root, cache, samples, rounds, args.size)
    print(f"benchmark: {bench} ({r['videos']} videos), {r['samples']} items per arm, size {args.size}")
    print("| loader | samples/s |\n| --- | --- |")
    print(f"| motion-focused, num_workers=0 | {r['motion_per_s']:.2f} |")
    print(f"| plain (both switches off), num_workers=0 | {r['plain_per_s']:.2f} |")
    print(f"| ratio motion / plain | {r['ratio']:.2f} |")
    print(f"| motion-focused, DataLoader 2 workers ({r['loader2_samples']} items) "
          f"| {r['loader2_per_s']:.2f} |")
    augmentation_section(args, root, cache, samples, rounds)
    print("\n| clips | videos | crop scale | crop draws | constrained (r>0) | bound | bound if constrained "
          "| corner fall-back |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    print_binding("built-in benchmark", cache, cache.video_ids(), draws)
    if args.real_cache:
        real = MotionCache(args.real_cache)
        print_binding("shared/data/clips", real, real.video_ids(), draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
