"""mcl_video.models: backbones (P3D ResNet-50, R(2+1)D-18, R3D-18, tiny), the MCL encoder pair and queue.

Import order inside the package (no cycles): base <- p3d_resnet, tiny <- backbones; capture <-
motion_alignment (with objective/) <- mcl; dist is standalone.
"""

from mcl_video.models.backbones import BACKBONES, build_backbone
from mcl_video.models.base import Backbone
from mcl_video.models.capture import FeatureCapture, check_alignment_layer
from mcl_video.models.mcl import MCL, MCLConfig, motion_broken_clips
from mcl_video.models.motion_alignment import MotionAlignment

__all__ = ["BACKBONES", "MCL", "Backbone", "FeatureCapture", "MCLConfig", "MotionAlignment", "build_backbone",
           "check_alignment_layer", "motion_broken_clips"]
