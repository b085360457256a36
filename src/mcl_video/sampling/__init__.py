"""mcl_video.sampling: motion-focused tubelets (clip starts, crops) and the pretraining dataset."""

from mcl_video.sampling.augment import AugmentParams, ClipAugment
from mcl_video.sampling.dataset import MCLPretrainDataset, PretrainSamplingConfig, SamplePlan
from mcl_video.sampling.photometric import augment_batch
from mcl_video.sampling.spatial import CropBox, CropInfo, MotionFocusedCrop, RandomResizedCropBox
from mcl_video.sampling.temporal import ClipDraw, MotionFocusedSampler, UniformSampler

__all__ = [
    "AugmentParams",
    "ClipAugment",
    "augment_batch",
    "ClipDraw",
    "CropBox",
    "CropInfo",
    "MCLPretrainDataset",
    "MotionFocusedCrop",
    "MotionFocusedSampler",
    "PretrainSamplingConfig",
    "RandomResizedCropBox",
    "SamplePlan",
    "UniformSampler",
]
