"""mcl_video.motion: optical flow, motion-boundary maps (crops, clip scores, MAL target), the cache."""

from mcl_video.motion.cache import CacheSettings, MotionCache, VideoMotion
from mcl_video.motion.flow import FLOW_BACKENDS, FlowEstimator, compute_flow, read_flo
from mcl_video.motion.maps import (
    alignment_target,
    boundary_derivatives,
    clip_score,
    motion_box,
    window_map,
)
from mcl_video.motion.prepare import PrepareSummary, prepare

__all__ = [
    "CacheSettings",
    "MotionCache",
    "PrepareSummary",
    "VideoMotion",
    "prepare",
    "FLOW_BACKENDS",
    "FlowEstimator",
    "alignment_target",
    "boundary_derivatives",
    "clip_score",
    "compute_flow",
    "motion_box",
    "read_flo",
    "window_map",
]
