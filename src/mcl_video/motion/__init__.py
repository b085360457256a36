"""mcl_video.motion"""

from mcl_video.motion.flow import FLOW_BACKENDS, FlowEstimator, compute_flow, read_flo

__all__ = ["FLOW_BACKENDS", "FlowEstimator", "compute_flow", "read_flo"]
