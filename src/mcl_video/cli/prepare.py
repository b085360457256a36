"""``mcl prepare ROOT --out CACHE``: compute flow and motion maps once per video."""

from __future__ import annotations

import argparse
import os

from mcl_video.cli import positive_int, writable_folder
from mcl_video.errors import UsageError
from mcl_video.motion.cache import CacheSettings
from mcl_video.motion.flow import FLOW_BOUND


def _border(value: str) -> int | str:
    if value.lower() == "auto":
        return "auto"
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected 'auto' or pixels >= 0, got {value!r}")
    return int(value)


def _resize(value: str) -> int | None:
    return None if value.lower() in ("none", "0", "full") else int(value)


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = CacheSettings()
    p = subparsers.add_parser(
        "prepare",
        help="build the motion cache (flow -> motion-boundary maps) for a folder of videos",
        description=(
            "Compute optical flow and the motion data training needs (per-frame 7x7 maps, clip scores, "
            "compact motion fields for the alignment target) for every video under ROOT (recursive), "
            "or, with --dataset, for the train and test lists of an annotation folder ROOT. A video is a "
            "video file or a folder of img_00001.jpg, ... frames (mmaction2 rawframes). With --flow-from, "
            "flow is read from existing flow JPEGs instead of computed. Resumable: a rerun skips finished "
            "videos. Exit status 1 when any video failed (see `mcl inspect`)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="folder of videos, or annotation folder with --dataset")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder (created or resumed)")
    p.add_argument("--flow", default=d.flow_backend, choices=["dis", "tvl1", "farneback", "raft"],
                   help="optical-flow backend (not with --flow-from)")
    p.add_argument("--flow-from", metavar="DIR",
                   help="read flow from existing flow JPEGs instead of computing it: DIR/<video id>/"
                        "flow_x_00001.jpg, flow_y_00001.jpg, ... (denseflow/mmaction2; also x_/y_); DIR "
                        "may be the rawframes root itself")
    p.add_argument("--flow-bound", type=float, default=FLOW_BOUND, metavar="B",
                   help="bound the flow JPEGs were quantised with (--flow-from): pixel value q is "
                        "flow q * 2B / 255 - B")
    p.add_argument("--raft-weights", metavar="PATH", help="local torchvision RAFT weights (--flow raft)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (>= 1)")
    p.add_argument("--shard", metavar="i/N", help="prepare only shard i of N (0 <= i < N)")
    p.add_argument("--resize-short", type=_resize, default=d.resize_short, metavar="S",
                   help="compute flow at this short side in pixels (no upscaling); 'none' = full size")
    p.add_argument("--clip-len", type=int, default=d.clip_len, help="clip length for the clip scores")
    p.add_argument("--stride", type=int, default=d.stride, help="frame stride of a clip")
    p.add_argument("--frame-window", type=int, default=d.frame_window,
                   help="flow frames around each frame for its 7x7 map (the release: 8, Kinetics 4)")
    p.add_argument("--border", type=_border, default=d.border, metavar="N|auto",
                   help="border zeroed in the frame maps and clip scores, pixels; 'auto' scales the "
                        "release's 8 px at 224 to the flow's resolution: round(8 * short_side / 224)")
    p.add_argument("--field-short", type=int, default=d.field_short,
                   help="short side of the stored motion fields (bytes per frame grow with its area)")
    p.add_argument("--representation", default=d.representation, choices=["derivatives", "flow"],
                   help="what the cache stores for the alignment target")
    p.add_argument("--dataset", choices=["ucf101", "hmdb51", "kinetics400", "mmaction2_rawframes",
                                         "mmaction2_videos"], help="ROOT is annotations")
    p.add_argument("--split", type=int, default=1, help="annotation split (with --dataset)")
    p.add_argument("--video-root", metavar="DIR", help="video folder of the annotations (with --dataset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from mcl_video.motion.cache import init_cache
    from mcl_video.motion.prepare import FLOW_JPEG, parse_shard, prepare

    options = {"weights": args.raft_weights} if args.raft_weights else {}
    flow = args.flow
    if args.flow == "raft" and not options:
        raise UsageError("--flow raft needs --raft-weights PATH (a local torchvision RAFT state dict)")
    if args.flow_from is not None:
        if args.flow != CacheSettings().flow_backend or args.raft_weights:
            raise UsageError("--flow-from reads existing flow: leave out --flow and --raft-weights")
        if not os.path.isdir(args.flow_from):
            raise UsageError(f"--flow-from {args.flow_from}: no such folder; pass the folder holding one "
                             "flow folder (flow_x_00001.jpg, ...) per video")
        if not args.flow_bound > 0:
            raise UsageError(f"--flow-bound must be > 0 pixels, got {args.flow_bound}")
        flow, options = FLOW_JPEG, {"bound": float(args.flow_bound)}
    if args.dataset and not args.video_root:
        raise UsageError("--dataset needs --video-root DIR (the folder the annotation paths are relative to)")
    try:
        parse_shard(args.shard)
    except ValueError as err:
        raise UsageError(f"--shard: {err}") from None
    settings = CacheSettings(
        flow_backend=flow, flow_options=options, clip_len=args.clip_len, stride=args.stride,
        frame_window=args.frame_window, border=args.border, resize_short=args.resize_short,
        representation=args.representation, field_short=args.field_short,
    )
    writable_folder(args.out, "--out")
    try:
        init_cache(args.out, settings)  # an existing cache must have the same settings
    except ValueError as err:
        raise UsageError(f"--out {args.out}: {err}") from None
    summary = prepare(args.root, args.out, settings, workers=args.workers, shard=args.shard,
                      dataset=args.dataset, split=args.split, video_root=args.video_root,
                      progress=not args.no_progress, flow_from=args.flow_from)
    print(summary)
    for path, reason in sorted(summary.failed.items()):
        print(f"FAILED {path}: {reason}")
    return 0 if summary.ok else 1
