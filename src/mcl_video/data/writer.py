"""Writing videos from uint8 RGB frames: H.264 MP4 (the built-in benchmark and converted datasets), and
any container/codec PyAV can encode (``write_video``: AVI, MKV, WebM, GIF, ...).

Everything is encoded with one thread, so the same frames give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

# the codec and pixel format `write_video` uses for a file extension when none is given
DEFAULT_CODECS: dict[str, tuple[str, str]] = {
    ".mp4": ("libx264", "yuv420p"),
    ".m4v": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".gif": ("gif", "rgb8"),
}


def write_video(
    path: Path | str,
    frames: np.ndarray,
    fps: int = 25,
    codec: str | None = None,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    gop: int | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames (an array or any iterable of ``H x W x 3`` frames).

    Args:
        path: the output file; its extension picks the container and, unless given, the codec and pixel
            format from ``DEFAULT_CODECS`` (``.mp4`` H.264, ``.avi`` MPEG-4 part 2, ``.webm`` VP9, ...).
        codec, pix_fmt: an FFmpeg encoder name (``libx264``, ``mpeg4``, ``mjpeg``, ``libvpx``, ...) and
            its pixel format; both default by extension.
        options: encoder options as FFmpeg spells them (``{"crf": "18"}``, ``{"qscale": "2"}``,
            ``{"g": "8", "bf": "2"}``).
        gop: keyframe interval in frames (FFmpeg's ``-g``); ``None`` leaves the encoder's default.
        container_format: the container when the extension does not say it (a temporary name).

    ``yuv420p`` frames are converted with OpenCV (BT.601 limited range, as decoders assume for untagged
    SD video); other pixel formats are converted by PyAV. Returns ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower() if container_format is None else "." + container_format
    default_codec, default_fmt = DEFAULT_CODECS.get(suffix, (None, None))
    codec = codec or default_codec
    pix_fmt = pix_fmt or (default_fmt if codec == default_codec else None) or "yuv420p"
    if codec is None:
        raise ValueError(
            f"write_video: no default codec for {path.name!r}; pass codec= (extensions with defaults: "
            f"{', '.join(DEFAULT_CODECS)})"
        )
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps, options=dict(options or {}))
        ctx = stream.codec_context
        ctx.pix_fmt, ctx.thread_count = pix_fmt, 1
        if gop is not None:
            ctx.gop_size = gop
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            if i == 0:
                ctx.width, ctx.height = frame.shape[1], frame.shape[0]
            if pix_fmt == "yuv420p":
                yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
                av_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            else:
                av_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(av_frame))
        container.mux(stream.encode(None))
    return path


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25, crf: int = 18) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames as H.264 MP4 (libx264, yuv420p, CRF ``crf``, preset
    veryfast, one thread: deterministic), whatever ``path``'s extension."""
    write_video(path, frames, fps, "libx264", "yuv420p", {"crf": str(crf), "preset": "veryfast"},
                container_format="mp4")
