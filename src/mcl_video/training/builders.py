"""Build the pieces of a run from a `PretrainConfig`: the MCL model, the dataset, the optimizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mcl_video.data import read_split
from mcl_video.errors import DataError
from mcl_video.models import MCL, MCLConfig, build_backbone
from mcl_video.motion import MotionCache
from mcl_video.sampling import MCLPretrainDataset
from mcl_video.training.config import ConfigError, PretrainConfig, sampling_config

# backbones whose constructor loads initial weights (`init=`); p3d_resnet50 inflates 2D ResNet-50 ones
INIT_BACKBONES = ("p3d_resnet50", "r2plus1d_18", "r3d_18")


def model_config(config: PretrainConfig) -> MCLConfig:
    """The `MCLConfig` of a pretraining config: the model section's keys of the same name, the EMA
    momentum (``model.ema``) and the backbone options with ``model.init``'s weights."""
    names = {f.name for f in dataclasses.fields(MCLConfig)}
    values = {k: v for k, v in config.model.model_dump().items() if k in names}
    values.update(backbone_options=backbone_options(config), momentum=config.model.ema,
                  motion_broken_negatives=tuple(config.model.motion_broken_negatives))
    return MCLConfig(**values)


def backbone_options(config: PretrainConfig) -> dict:
    """`backbone_options`, plus `weights` from `init=` (the file the backbone starts from)."""
    options = dict(config.model.backbone_options)
    if not config.model.init:
        return options
    if config.model.backbone not in INIT_BACKBONES:
        raise ConfigError(f"config: model.init= loads initial weights into {', '.join(INIT_BACKBONES)}; "
                          f"model.backbone={config.model.backbone} has none to load: remove model.init=")
    if "weights" in options:
        raise ConfigError("config: model.init= and model.backbone_options={weights: ...} both name initial "
                          "weights; keep one (model.init=)")
    if not Path(config.model.init).is_file():
        raise DataError(f"model.init={config.model.init}: file not found; give a local ImageNet ResNet-50 "
                        "file (torchvision state dict or MoCo v2 checkpoint), or remove model.init= to start "
                        "at random")
    return {**options, "weights": config.model.init}


def build_model(config: PretrainConfig) -> torch.nn.Module:
    return MCL(model_config(config))


def feature_grid(config: PretrainConfig) -> tuple[int, int, int]:
    """`(T', H', W')` of the backbone's alignment layer for the config's clip length and size."""
    options = {k: v for k, v in config.model.backbone_options.items() if k != "weights"}
    with torch.device("meta"):  # the grid is analytic: build the structure only, no weights
        backbone = build_backbone(config.model.backbone, **options)
    return tuple(backbone.feature_grid(config.sampling.clip_len, config.sampling.size))


def _video_root(config: PretrainConfig) -> Path:
    if config.data.video_root:
        return Path(config.data.video_root)
    return Path(config.data.annotations).parent / "videos"


def build_dataset(config: PretrainConfig, records: list | None = None):
    """`MCLPretrainDataset` with the config's motion cache over `records` (`VideoRecord`s relative to
    the config's video root), by default the training videos of the config's split."""
    data = config.data
    if records is None and not data.annotations:
        raise ConfigError("config: data.annotations= (the folder of the split lists) is required, e.g. "
                          "data.annotations=bench/annotations")
    if not data.cache:
        raise ConfigError("config: data.cache= (the motion cache from `mcl prepare`) is required")
    root = _video_root(config)
    if records is None:
        records = read_split(data.dataset, data.annotations, split=data.split, subset="train",
                             video_root=str(root))
        if not records:
            raise ConfigError(f"{data.annotations}: split {data.split} of {data.dataset} has no training "
                              "videos")
    cache = MotionCache(data.cache)
    return MCLPretrainDataset(str(root), records, cache, sampling_config(config), feature_grid(config))


def build_optimizer(config: PretrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD (release: momentum 0.9, wd 1e-4) or AdamW over the parameters that need gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    if config.optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.optim.lr, momentum=config.optim.momentum,
                               weight_decay=config.optim.weight_decay)
    return torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
