"""Optional clip reader on ``torchcodec`` (CPU, or CUDA/NVDEC with ``device="cuda"``), beside PyAV.

``torchcodec`` is not a dependency: its wheel loads the system's FFmpeg shared libraries (Debian
``libavcodec59`` etc., FFmpeg 4-8), which a fresh machine may not have. :func:`available` says whether
it imports and loads here (and :func:`unavailable_reason` why not); nothing in the package imports it
otherwise, so ``make demo`` and ``make test`` run without it.

``read_clip_torchcodec(path, indices)`` has :func:`mcl_video.data.video.read_clip`'s contract (uint8
``T x H x W x 3`` RGB, repeats allowed, indices past the end clamped) and decodes through
``VideoDecoder(seek_mode="exact")``, which numbers frames in presentation order from a scan of the file.
On a CUDA device the frames stay in device memory. That numbering agrees with PyAV's (and with a
sequential decode) on MP4/MOV, MKV/WebM and GIF; on AVI files with B-frames (UCF101's XviD, the NTU
clip) torchcodec's frame i is PyAV's frame i - 1 or i - 2 (the pixels are identical, the numbering is
not), so AVI and other containers without real timestamps are read with PyAV here. ``resize_short``
resizes with antialiased bilinear interpolation in torch, close to but not bit-equal with PyAV's
swscale resize.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from mcl_video.data.rawframes import resized_hw

# containers whose frames torchcodec numbers as PyAV does (presentation timestamps; GIF)
TORCHCODEC_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".gif")


@lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when torchcodec imports and its FFmpeg libraries load; else the reason, in one line."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except ImportError as err:
        return f"torchcodec is not installed ({err})"
    except (OSError, RuntimeError) as err:  # the wheel is there but no FFmpeg libraries it can load
        return f"torchcodec cannot load FFmpeg ({str(err).splitlines()[0][:160]})"
    return None


def available() -> bool:
    return unavailable_reason() is None


def read_clip_torchcodec(path: str | os.PathLike, indices: Sequence[int] | np.ndarray,
                         resize_short: int | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """Frames at 0-based ``indices`` as uint8 ``T x H x W x 3`` RGB (on ``device``)."""
    from torchcodec.decoders import VideoDecoder

    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
        raise ValueError(f"read_clip_torchcodec({path}): indices is empty; pass at least one frame index")
    if min(idx) < 0:
        raise ValueError(f"read_clip_torchcodec({path}): negative frame index {min(idx)} (0-based)")
    if not str(path).lower().endswith(TORCHCODEC_EXTENSIONS):
        from mcl_video.data.video import read_clip

        return read_clip(path, idx, resize_short).to(device)
    decoder = VideoDecoder(str(path), seek_mode="exact", device=str(device), dimension_order="NCHW")
    last = len(decoder) - 1
    wanted = sorted({min(i, last) for i in idx})
    frames = decoder.get_frames_at(wanted).data  # len(wanted) x 3 x H x W uint8
    if resize_short is not None:
        h, w = frames.shape[-2:]
        hw = resized_hw(h, w, resize_short)
        if tuple(hw) != (h, w):
            frames = F.interpolate(frames.float(), size=tuple(hw), mode="bilinear", antialias=True,
                                   align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
    pos = {i: k for k, i in enumerate(wanted)}
    order = torch.tensor([pos[min(i, last)] for i in idx], device=frames.device)
    return frames.index_select(0, order).permute(0, 2, 3, 1).contiguous()
