"""``mcl inspect CACHE``: what a motion cache holds (videos, bytes per frame, flow, versions, failures)."""

from __future__ import annotations

import argparse
import json

from mcl_video.cli import open_cache


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect",
        help="summarise a motion cache built by `mcl prepare`",
        description="Print the video count, bytes per frame, flow backend and options, package versions, "
                    "the failed videos and the corrupt entries (which a rerun of `mcl prepare` prepares "
                    "again) of a motion cache (and, with ROOT, the videos not yet in it).",
    )
    p.add_argument("cache", metavar="CACHE", help="cache folder")
    p.add_argument("--root", help="video folder the cache was prepared from: also list missing videos")
    return p


def run(args) -> int:
    from mcl_video.motion.cache import cache_stats
    from mcl_video.motion.prepare import list_videos

    cache = open_cache(args.cache, "CACHE")
    stats = cache_stats(cache)
    s = cache.meta["settings"]
    print(f"cache            {cache.path} ({cache.meta['format']} v{cache.meta['version']})")
    print(f"videos           {stats['videos']}  ({stats['frames']} frames, {stats['bytes']} bytes)")
    print(f"bytes per frame  {stats['bytes_per_frame']:.0f}")
    print(f"flow             {s['flow_backend']} {json.dumps(s['flow_options'])}, "
          f"resize_short={s['resize_short']}")
    used = "/".join(str(b) for b in stats["borders"]) or "-"
    border = f"{s['border']} px" if s["border"] != "auto" else f"auto = round(8 * short / 224): {used} px"
    print(f"maps             clip {s['clip_len']}x{s['stride']}, frame window {s['frame_window']}, "
          f"grid {s['grid']}, border {border}, "
          f"stored {s['representation']} "
          f"(short side {s['field_short']})")
    print("versions         " + ", ".join(f"{k} {v}" for k, v in cache.meta.get("versions", {}).items()))
    failures = cache.failures()
    print(f"failed           {len(failures)}")
    for vid, rec in failures.items():
        print(f"  {vid}: {rec['path']}: {rec['reason']}")
    corrupt = cache.bad_entries()
    print(f"corrupt          {len(corrupt)}")
    for vid, why in corrupt.items():
        print(f"  {vid}: {why}")
    if args.root:
        _, videos = list_videos(args.root)
        missing = sorted(set(videos) - set(cache.video_ids()))
        print(f"missing          {len(missing)}")
        for vid in missing:
            print(f"  {vid}")
    return 0
