"""Writing videos: H.264 MP4 from uint8 frames, as the built-in benchmark and converted datasets use."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25, crf: int = 18) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames as H.264 (libx264, yuv420p, one thread: deterministic)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        ctx = stream.codec_context
        ctx.width, ctx.height, ctx.pix_fmt, ctx.thread_count = frames.shape[2], frames.shape[1], "yuv420p", 1
        for frame in frames:  # BT.601 limited range, as decoders assume for untagged SD video
            yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
        container.mux(stream.encode(None))
