"""``mcl transcode SRC OUT``: resized, short-GOP H.264 copies of a video folder (fast random clip reads)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mcl_video.cli import positive_int, writable_folder
from mcl_video.errors import MissingInputError, UsageError


def _short_side(value: str) -> int | None:
    if value.lower() in ("none", "0", "full"):
        return None
    if not value.isdigit() or int(value) < 2:
        raise argparse.ArgumentTypeError(f"expected pixels >= 2 or 'none', got {value!r}")
    return int(value)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from mcl_video.data.transcode import TranscodeSettings  # imports PyAV: only when the command is built

    d = TranscodeSettings()
    p = subparsers.add_parser(
        "transcode",
        help="write resized, short-GOP H.264 copies of a video folder (faster random clip reads)",
        description=(
            "Re-encode every video under SRC (recursive; or the one file SRC) to OUT/<relative path>.mp4: "
            "H.264 with a keyframe every --gop frames and the short side resized to --short-side pixels "
            "(smaller videos keep their size), every frame kept, no audio. Random clip reads decode from "
            "the last keyframe, so short GOPs at training size make them several times faster. "
            "Resumable: a copy appears only when complete and a rerun skips it. Videos that cannot be "
            "read are reported and skipped; exit status 1 when any failed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="folder of videos (or one video file)")
    p.add_argument("out", metavar="OUT", help="output folder (created or resumed; outside SRC)")
    p.add_argument("--short-side", type=_short_side, default=d.short_side, metavar="S",
                   help="short side of the copies in pixels; 'none' keeps the source size")
    p.add_argument("--gop", type=positive_int, default=d.gop, help="frames from one keyframe to the next")
    p.add_argument("--crf", type=int, choices=range(0, 52), metavar="0-51", default=d.crf,
                   help="libx264 constant rate factor (lower: better quality, larger files)")
    p.add_argument("--preset", default=d.preset,
                   choices=["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"],
                   help="libx264 speed preset")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (>= 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from mcl_video.data.transcode import TranscodeSettings, transcode

    src = Path(args.src)
    if not src.exists():
        raise MissingInputError(f"SRC {src} does not exist; give a folder of videos or a video file")
    settings = TranscodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset)
    writable_folder(args.out, "OUT")
    try:
        summary = transcode(src, args.out, settings, workers=args.workers, progress=not args.no_progress)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(summary)
    for path, reason in sorted(summary.failed.items()):
        print(f"FAILED {path}: {reason}")
    return 0 if summary.ok else 1
