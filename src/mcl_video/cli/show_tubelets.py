"""``mcl show-tubelets VIDEO --cache CACHE --out DIR``: picture one training sample's tubelets."""

from __future__ import annotations

import argparse

from mcl_video.cli import open_cache


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "show-tubelets",
        help="draw the motion-focused clips and crops of one training sample (PNG + GIF)",
        description=(
            "Sample one MCL training item from VIDEO as pretraining would (clip starts and crops) and write "
            "DIR/tubelets.png (clip-score curve with the three clip starts; frames of each clip with the "
            "motion map, the motion box B and the crop boxes; the augmented views; the query's alignment "
            "target) and DIR/query.gif (the query tubelet as the network sees it)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("video", metavar="VIDEO", help="a video file whose motion is in the cache")
    p.add_argument("--cache", required=True, help="motion cache folder written by `mcl prepare`")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample's random draws")
    p.add_argument("--size", type=int, default=112, help="input size of the augmented views")
    p.add_argument("--frames", type=int, default=4, help="frames shown per clip")
    p.add_argument("--uniform", action="store_true", help="plain sampling and cropping (switches off)")
    return p


def run(args) -> int:
    from mcl_video.errors import DataError
    from mcl_video.sampling.show import resolve_video_id, show_tubelets

    cache = open_cache(args.cache, "--cache")
    try:
        resolve_video_id(args.video, cache)
    except KeyError as err:  # the video is not in the cache
        raise DataError(f"{args.video}: {err.args[0]}") from None
    options = {"size": args.size}
    if args.uniform:
        options.update(motion_sampling=False, motion_crop=False)
    paths = show_tubelets(args.video, cache, args.out, seed=args.seed,
                          frames=args.frames, config=options)
    for path in paths.values():
        print(path)
    return 0
