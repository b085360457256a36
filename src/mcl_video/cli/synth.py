"""``mcl synth OUT``: write the built-in motion benchmark (classes differ only by motion)."""

from __future__ import annotations

import argparse
import logging
import time

from mcl_video.data.synth import MOTION_CLASSES, SynthConfig, make_benchmark

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = SynthConfig()
    p = subparsers.add_parser(
        "synth",
        help="write the built-in motion benchmark (UCF101-style layout)",
        description=(
            "Render synthetic videos whose classes differ only by the motion of one sprite "
            f"({', '.join(MOTION_CLASSES)}; --classes K takes the first K), over textured backgrounds "
            "with static distractors and a panning camera; regime options make the actor small, the "
            "distractors salient and the sprite rest for part of each video; --periphery-textures makes a "
            "positive control (a static texture shortcut outside the actor's region). Writes OUT/videos, "
            "OUT/annotations (classInd.txt, trainlist01.txt, testlist01.txt), OUT/meta.json and "
            "OUT/contact_sheet.png."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (new or empty, unless --overwrite)")
    p.add_argument("--classes", type=int, default=d.classes, help="number of motion classes (1-8)")
    p.add_argument("--train-per-class", type=int, default=d.train_per_class, help="training videos per class")
    p.add_argument("--test-per-class", type=int, default=d.test_per_class, help="test videos per class")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per video")
    p.add_argument("--size", type=int, default=d.size, help="frame side in pixels (even)")
    p.add_argument("--seed", type=int, default=d.seed, help="same seed, same benchmark (frames and files)")
    p.add_argument("--sprite-size", type=float, nargs=2, metavar=("MIN", "MAX"), default=d.sprite_size,
                   help="sprite diameter as a fraction of the frame side")
    p.add_argument("--background-contrast", type=float, default=d.background_contrast,
                   help="texture contrast of the background, 0 (flat) to 1")
    p.add_argument("--distractors", type=int, nargs=2, metavar=("MIN", "MAX"), default=d.distractors,
                   help="number of static distractor sprites")
    p.add_argument("--pan-speed", type=float, default=d.pan_speed, help="maximum camera pan, px/frame")
    p.add_argument("--period", type=float, nargs=2, metavar=("MIN", "MAX"), default=d.period,
                   help="frames per cycle of the periodic motions")
    p.add_argument("--moving-region", type=float, default=d.moving_region, metavar="F",
                   help="fraction of the frame area the moving sprite lives in (sprite size and motion "
                        "scale with it): < 1 gives a small actor in a larger frame")
    p.add_argument("--distractor-scale", type=float, default=d.distractor_scale,
                   help="size of the static distractors relative to the moving sprite (> 1: more salient)")
    p.add_argument("--idle-fraction", type=float, default=d.idle_fraction,
                   help="fraction of each video's frames in which the sprite rests (0-0.9)")
    p.add_argument("--idle-segments", type=int, default=d.idle_segments,
                   help="number of resting stretches the idle frames are split into")
    p.add_argument("--damping", type=float, default=d.damping, metavar="D",
                   help="share of the sprite's motion amplitude or speed lost by the last frame (0-0.9): "
                        "an arrow of time, so the order of clips can be told; 0 = time-reversible")
    p.add_argument("--periphery-textures", type=int, default=d.periphery_textures, metavar="K",
                   help="positive control: a unique high-contrast static texture from one of K families "
                        "in the periphery of each video (outside the actor's region, which is flat), and "
                        "one actor appearance for all videos; needs --moving-region < 1, --pan-speed 0 and "
                        "--distractors 0 0; 0 = off")
    p.add_argument("--shared-texture", action="store_true",
                   help="the positive control's shortcut-removed control: one periphery texture for all "
                        "videos")
    p.add_argument("--rest-mark", action="store_true",
                   help="a video-specific static mark in the actor's region, shown only while the actor "
                        "rests (needs --periphery-textures and --idle-fraction > 0)")
    p.add_argument("--grayscale", action=argparse.BooleanOptionalAction, default=d.grayscale,
                   help="remove colour cues (--no-grayscale keeps colours)")
    p.add_argument("--fps", type=int, default=d.fps, help="frame rate of the written videos")
    p.add_argument("--crf", type=int, default=d.crf, help="libx264 constant rate factor")
    p.add_argument("--workers", type=int, default=d.workers, help="processes (results do not depend on it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing benchmark in OUT")
    return p


def run(args) -> int:
    options = {k: getattr(args, k) for k in (
        "classes", "train_per_class", "test_per_class", "frames", "size", "seed", "sprite_size",
        "background_contrast", "distractors", "pan_speed", "period", "moving_region", "distractor_scale",
        "idle_fraction", "idle_segments", "damping", "periphery_textures", "shared_texture", "rest_mark",
        "grayscale", "fps", "crf", "workers")}
    start = time.perf_counter()
    try:
        out = make_benchmark(args.out, overwrite=args.overwrite, progress=True, **options)
    except (ValueError, FileExistsError) as e:
        log.error("%s", e)
        return 2
    total = options["classes"] * (options["train_per_class"] + options["test_per_class"])
    log.info("wrote %d videos to %s in %.1f s (see %s)", total, out, time.perf_counter() - start,
             out / "contact_sheet.png")
    return 0
