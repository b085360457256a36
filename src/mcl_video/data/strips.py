"""Frame-strip images (one video stored as a row of frames in one JPEG/PNG) -> video files.

Some small action sets are distributed this way, e.g. the MoCoGAN copy of the Weizmann actions
(``../shared/data/actions-weizmann-mocogan``: 64 x 64 frames, frame ``i`` = columns
``[64 i, 64 (i + 1))``). Converting them once into H.264 MP4s lets every later stage read them through
the one video reader (``mcl_video.data.read_clip``) and index them as a ``folder`` dataset
(``read_split("folder", out_dir)``: one sub-folder per class).

    from mcl_video.data.strips import convert_strips
    convert_strips("../shared/data/actions-weizmann-mocogan", "data/weizmann")

Class names come from a ``labels.csv`` beside the strips (columns ``file`` and ``action``) when there is
one, else from each strip's parent folder. Every MP4 is written to a temporary name and renamed when
complete, so an interrupted conversion never leaves a file that looks finished; a rerun converts only
what is missing. An unreadable strip is reported (file and reason) and skipped.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mcl_video.atomic import atomic_path
from mcl_video.data.video import VideoReadError
from mcl_video.data.writer import write_mp4

log = logging.getLogger(__name__)

STRIP_EXTENSIONS = (".jpg", ".jpeg", ".png")


def read_strip(path: str | os.PathLike, frame_width: int | None = None) -> np.ndarray:
    """One strip image -> uint8 ``(T, H, W, 3)`` RGB frames.

    ``frame_width`` defaults to the image height (square frames). Raises ``VideoReadError`` naming the
    file when it cannot be decoded or its width is not a whole number of frames.
    """
    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoReadError(f"{path}: not a readable image (truncated or not a JPEG/PNG); "
                             "re-copy the file or remove it")
    height, width = image.shape[:2]
    fw = frame_width or height
    if fw <= 0 or width % fw != 0:
        raise VideoReadError(f"{path}: width {width} is not a multiple of the frame width {fw}; "
                             "pass frame_width= for strips of non-square frames")
    frames = image.reshape(height, width // fw, fw, 3).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(frames[..., ::-1])  # BGR -> RGB


def _labels_from_csv(src: Path) -> dict[str, str]:
    table = src / "labels.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "action"} <= set(rows[0]):
        raise ValueError(f"{table}: needs the columns 'file' and 'action', has {sorted(rows[0])}")
    return {row["file"]: row["action"] for row in rows}


@dataclass
class ConversionReport:
    """What :func:`convert_strips` did: videos written, already present, and strips skipped."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # strip path -> reason

    @property
    def videos(self) -> list[Path]:
        return sorted(self.written + self.present)


def convert_strips(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    frame_width: int | None = None,
    fps: int = 25,
    grayscale: bool = False,
    crf: int = 18,
) -> ConversionReport:
    """Convert every strip under ``src`` into ``out_dir/<class>/<name>.mp4``.

    Args:
        src: folder searched recursively for ``.jpg``/``.jpeg``/``.png`` strips.
        out_dir: destination; one sub-folder per class, so ``read_split("folder", out_dir)`` indexes it.
        frame_width: width of one frame (default: the strip's height).
        fps: frame rate written into the MP4 (strips carry none; the Weizmann originals are 50 fps).
        grayscale: store luma only (replicated to 3 channels), e.g. to match grayscale pretraining.
        crf: H.264 quality (18: visually lossless).
    """
    src, out_dir = Path(src), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: strip folder not found")
    labels = _labels_from_csv(src)
    strips = sorted(p for p in src.rglob("*") if p.suffix.lower() in STRIP_EXTENSIONS)
    if not strips:
        raise FileNotFoundError(f"{src}: no {'/'.join(STRIP_EXTENSIONS)} strips found")
    report = ConversionReport(out_dir)
    for strip in strips:
        rel = strip.relative_to(src).as_posix()
        label = labels.get(rel, strip.parent.name if strip.parent != src else "unlabelled")
        target = out_dir / label / f"{strip.parent.name}_{strip.stem}.mp4"
        if target.is_file():
            report.present.append(target)
            continue
        try:
            frames = read_strip(strip, frame_width)
        except VideoReadError as err:
            log.warning("skipping strip: %s", err)
            report.skipped[str(strip)] = str(err)
            continue
        if grayscale:
            luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            frames = np.repeat(np.round(luma).astype(np.uint8)[..., None], 3, axis=-1)
        with atomic_path(target, "free space and run the conversion again (finished videos are kept)") as tmp:
            write_mp4(tmp, frames, fps=fps, crf=crf)  # the temporary name is not a video extension
        report.written.append(target)
    log.info("strips -> %s: %d written, %d present, %d skipped", out_dir, len(report.written),
             len(report.present), len(report.skipped))
    return report
