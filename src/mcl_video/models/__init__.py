"""mcl_video.models: backbones (METHOD §5) and the MCL encoder pair with its queue (METHOD §4)."""

from mcl_video.models.backbones import Backbone, build_backbone
from mcl_video.models.capture import FeatureCapture, check_alignment_layer
from mcl_video.models.mcl import MCL, MCLConfig

__all__ = ["MCL", "Backbone", "FeatureCapture", "MCLConfig", "build_backbone", "check_alignment_layer"]
