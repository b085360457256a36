"""mcl_video.data: video reading and dataset indexes (UCF101, HMDB51, Kinetics-400, class folders).

``mcl_video.data.synth`` (the built-in benchmark) is imported on demand, not here.
"""

from mcl_video.data.discovery import find_videos, video_id
from mcl_video.data.splits import DATASETS, VideoRecord, read_split
from mcl_video.data.video import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoReadError,
    iter_frames,
    read_clip,
    read_frames,
    read_video_info,
)

__all__ = [
    "DATASETS",
    "VideoRecord",
    "read_split",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoReadError",
    "find_videos",
    "iter_frames",
    "read_clip",
    "read_frames",
    "read_video_info",
    "video_id",
]
