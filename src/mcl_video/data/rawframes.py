"""Rawframes: a video stored as a folder of numbered frame images (the mmaction2 / TSN layout).

    ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01/img_00001.jpg, img_00002.jpg, ...   (frames)
                                            flow_x_00001.jpg, flow_y_00001.jpg  (optional TV-L1 flow)

A folder holding files ``img_<number>.jpg`` (also ``.jpeg``/``.png``) is one video. Its frames are the
``img_`` files in number order; numbering starts at 1 (mmaction2's default) or 0 and has no gaps, else
the folder is refused with the first missing file named. ``data.video`` dispatches ``read_clip``,
``read_video_info`` and ``iter_frames`` here when a path is a folder, so a frame folder is read with the
same contract as a video file (uint8 RGB, ``resize_short`` with area averaging, indices clamped to the
last frame). Errors are :class:`FrameFolderError` (``data.video`` re-raises them as its VideoReadError).

Flow JPEGs (``read_flow_jpegs``): ``flow_x_%05d.jpg`` / ``flow_y_%05d.jpg`` (denseflow, mmaction2), or
``x_%05d.jpg`` / ``y_%05d.jpg``, numbered from 1, one pair per consecutive frame pair. denseflow
quantises a flow value ``v`` (pixels) with bound ``b`` as ``q = 0`` if ``v < -b``, ``255`` if ``v > b``,
else ``round(255 * (v + b) / (2 * b))``; we invert it as ``v = q * 2b / 255 - b`` (``dequantise_flow``),
so ``q = 128`` reads as ``+b / 255`` (0.078 px at b = 20) and one step is ``2b / 255`` px. mmaction2's
Python extractor (``tools/misc/flow_extraction.py``, names ``x_``/``y_``) truncates instead of rounding
(``uint8(255 * (v + b) / 2b)``): read the same way, its flow comes out lower by up to one step, half a
step on average, an offset the motion-boundary derivatives do not see.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from mcl_video.errors import DataError

FRAME_PATTERN = re.compile(r"^img_(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)
FLOW_PREFIXES: tuple[tuple[str, str], ...] = (("flow_x_", "flow_y_"), ("x_", "y_"))


def resized_hw(height: int, width: int, resize_short: int | None) -> tuple[int, int]:
    """Output size for a short-side resize that keeps the aspect ratio (long side rounded)."""
    if resize_short is None:
        return height, width
    if resize_short <= 0:
        raise ValueError(f"resize_short must be a positive number of pixels, got {resize_short}")
    if height <= width:
        return resize_short, max(1, round(width * resize_short / height))
    return max(1, round(height * resize_short / width)), resize_short


class FrameFolderError(DataError):
    """A frame folder that cannot be read: no frames, a gap in the numbering, a corrupt image."""


_LISTINGS: OrderedDict[tuple, tuple[Path, ...]] = OrderedDict()
_LISTINGS_SIZE = 4096


def is_frame_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding ``img_<n>`` frame images."""
    if not os.path.isdir(path):
        return False
    with os.scandir(path) as entries:
        return any(FRAME_PATTERN.match(e.name) for e in entries)


def _numbered(folder: Path, pattern: re.Pattern, what: str) -> tuple[Path, ...]:
    """Files of ``folder`` matching ``pattern`` in number order; refuses gaps (numbering from 0 or 1)."""
    try:
        names = [(int(m.group(1)), e.name) for e in os.scandir(folder) if (m := pattern.match(e.name))]
    except OSError as err:
        raise FrameFolderError(f"{folder}: cannot list the folder ({err.strerror}); check the path") from None
    if not names:
        raise FrameFolderError(f"{folder}: no {what} in the folder; check the path")
    names.sort()
    numbers = [n for n, _ in names]
    start = 0 if numbers[0] == 0 else 1
    if numbers != list(range(start, start + len(numbers))):
        present = set(numbers)
        missing = next(n for n in itertools.count(start) if n not in present)
        raise FrameFolderError(f"{folder}: {what} number {missing} is missing (found {len(numbers)} files "
                               f"numbered {numbers[0]}..{numbers[-1]}); re-extract the frames of this video")
    return tuple(folder / name for _, name in names)


def frame_files(folder: str | os.PathLike) -> tuple[Path, ...]:
    """The frame images of ``folder`` in order (listing cached by folder path and mtime)."""
    folder = Path(folder)
    try:
        key = (os.fspath(folder), os.stat(folder).st_mtime_ns)
    except OSError as err:
        raise FrameFolderError(f"{folder}: no such frame folder ({err.strerror}); check the path") from None
    if key not in _LISTINGS:
        _LISTINGS[key] = _numbered(folder, FRAME_PATTERN, "img_<n>.jpg frames")
        if len(_LISTINGS) > _LISTINGS_SIZE:
            _LISTINGS.popitem(last=False)
    _LISTINGS.move_to_end(key)
    return _LISTINGS[key]


def _imread(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FrameFolderError(f"{path.parent}: {path.name} cannot be read (missing, truncated or not an "
                               "image); re-extract the frames of this video")
    return image


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == hw:
        return image
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def read_rgb(path: Path, hw: tuple[int, int] | None, expect_hw: tuple[int, int]) -> np.ndarray:
    """One frame as ``H x W x 3`` uint8 RGB, resized to ``hw`` (None: as stored)."""
    image = _imread(path, cv2.IMREAD_COLOR)
    if image.shape[:2] != tuple(expect_hw):
        raise FrameFolderError(f"{path.parent}: frame {path.name} is {image.shape[1]}x{image.shape[0]} but "
                               f"the first frame is {expect_hw[1]}x{expect_hw[0]}; re-extract the frames")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return _resize(rgb, hw) if hw is not None else rgb


def folder_info(folder: str | os.PathLike) -> tuple[int, int, int]:
    """``(num_frames, height, width)`` of a frame folder (the size of its first frame)."""
    files = frame_files(folder)
    height, width = _imread(files[0], cv2.IMREAD_COLOR).shape[:2]
    return len(files), int(height), int(width)


def read_folder_clip(folder: str | os.PathLike, indices: Sequence[int], hw: tuple[int, int] | None,
                     frame_hw: tuple[int, int]) -> np.ndarray:
    """Frames at 0-based ``indices`` (clamped to the last) as uint8 ``T x H x W x 3`` RGB."""
    files = frame_files(folder)
    idx = [min(int(i), len(files) - 1) for i in indices]
    frames = {i: read_rgb(files[i], hw, frame_hw) for i in sorted(set(idx))}
    return np.stack([frames[i] for i in idx])


def iter_folder_frames(folder: str | os.PathLike, hw: tuple[int, int] | None,
                       frame_hw: tuple[int, int]) -> Iterator[np.ndarray]:
    """Every frame of a frame folder in order, ``H x W x 3`` uint8 RGB."""
    for path in frame_files(folder):
        yield read_rgb(path, hw, frame_hw)


# ---- flow JPEGs ---------------------------------------------------------------------------------------


def quantise_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """denseflow's flow -> uint8 mapping (module docstring): ``round(255 * (v + b) / 2b)``, clipped."""
    b = float(bound)
    q = np.rint(255.0 * (np.asarray(flow, np.float64) + b) / (2.0 * b))
    return np.clip(q, 0, 255).astype(np.uint8)


def dequantise_flow(q: np.ndarray, bound: float) -> np.ndarray:
    """Inverse of :func:`quantise_flow`: ``v = q * 2b / 255 - b`` (float32 pixels)."""
    b = float(bound)
    return (np.asarray(q, np.float32) * np.float32(2.0 * b / 255.0) - np.float32(b)).astype(np.float32)


def flow_files(folder: str | os.PathLike) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """``(x files, y files)`` of a flow folder, in order (``flow_x_``/``flow_y_`` or ``x_``/``y_``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameFolderError(f"{folder}: no flow folder for this video; expected flow_x_00001.jpg, "
                               "flow_y_00001.jpg, ... there (check --flow-from)")
    with os.scandir(folder) as entries:
        names = [e.name for e in entries]
    for px, py in FLOW_PREFIXES:
        pat_x = re.compile(rf"^{px}(\d+)\.jpe?g$", re.IGNORECASE)
        if any(pat_x.match(n) for n in names):
            xs = _numbered(folder, pat_x, f"{px}<n>.jpg flow image")
            pat_y = re.compile(rf"^{py}(\d+)\.jpe?g$", re.IGNORECASE)
            ys = _numbered(folder, pat_y, f"{py}<n>.jpg flow image")
            if len(xs) != len(ys):
                raise FrameFolderError(f"{folder}: {len(xs)} {px} but {len(ys)} {py} flow images; each flow "
                                       "frame needs both; re-extract the flow of this video")
            return xs, ys
    raise FrameFolderError(f"{folder}: no flow images (flow_x_00001.jpg / flow_y_00001.jpg or x_00001.jpg / "
                           "y_00001.jpg); check --flow-from")


def read_flow_jpegs(folder: str | os.PathLike, bound: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(u, v)`` float32 ``H x W`` pixels per flow frame of ``folder`` (``dequantise_flow``)."""
    xs, ys = flow_files(folder)
    shape = None
    for fx, fy in zip(xs, ys):
        qx, qy = _imread(fx, cv2.IMREAD_GRAYSCALE), _imread(fy, cv2.IMREAD_GRAYSCALE)
        shape = shape or qx.shape
        if qx.shape != shape or qy.shape != shape:
            raise FrameFolderError(f"{Path(folder)}: flow images {fx.name} / {fy.name} differ in size from "
                                   "the first flow image; re-extract the flow of this video")
        yield dequantise_flow(qx, bound), dequantise_flow(qy, bound)
