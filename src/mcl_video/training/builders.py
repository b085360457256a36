"""Build the pieces of a run from a `PretrainConfig`: the MCL model, the dataset, the optimizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mcl_video import sampling
from mcl_video.data import read_split
from mcl_video.errors import DataError
from mcl_video.models import MCL, MCLConfig, build_backbone
from mcl_video.motion import MotionCache
from mcl_video.sampling import MCLPretrainDataset
from mcl_video.training.config import ConfigError, PretrainConfig

# backbones whose constructor loads initial weights (`init=`); p3d_resnet50 inflates 2D ResNet-50 ones
INIT_BACKBONES = ("p3d_resnet50", "r2plus1d_18", "r3d_18")


def model_config(config: PretrainConfig) -> MCLConfig:
    """The `MCLConfig` (backbone, heads, queue, loss terms) of a pretraining config."""
    return MCLConfig(
        backbone=config.backbone,
        backbone_options=backbone_options(config),
        feat_dim=config.feat_dim,
        queue_size=config.queue_size,
        temperature=config.temperature,
        momentum=config.ema,
        mask_same_video=config.mask_same_video,
        use_intra=config.use_intra,
        use_order=config.use_order,
        use_mal=config.use_mal,
        saliency=config.saliency,
        order_head=config.order_head,
        motion_broken_negatives=tuple(config.motion_broken_negatives),
        shuffle_bn=config.shuffle_bn,
        sync_bn=config.sync_bn,
    )


def backbone_options(config: PretrainConfig) -> dict:
    """`backbone_options`, plus `weights` from `init=` (the file the backbone starts from)."""
    options = dict(config.backbone_options)
    if not config.init:
        return options
    if config.backbone not in INIT_BACKBONES:
        raise ConfigError(f"config: init= loads initial weights into {', '.join(INIT_BACKBONES)}; "
                          f"backbone={config.backbone} has none to load: remove init=")
    if "weights" in options:
        raise ConfigError("config: init= and backbone_options={weights: ...} both name initial weights; "
                          "keep one (init=)")
    if not Path(config.init).is_file():
        raise DataError(f"init={config.init}: file not found; give a local ImageNet ResNet-50 file "
                        "(torchvision state dict or MoCo v2 checkpoint), or remove init= to start at random")
    return {**options, "weights": config.init}


def build_model(config: PretrainConfig) -> torch.nn.Module:
    return MCL(model_config(config))


def feature_grid(config: PretrainConfig) -> tuple[int, int, int]:
    """`(T', H', W')` of the backbone's alignment layer for the config's clip length and size."""
    options = {k: v for k, v in config.backbone_options.items() if k != "weights"}
    with torch.device("meta"):  # the grid is analytic: build the structure only, no weights
        backbone = build_backbone(config.backbone, **options)
    return tuple(backbone.feature_grid(config.clip_len, config.size))


def _video_root(config: PretrainConfig) -> Path:
    if config.video_root:
        return Path(config.video_root)
    return Path(config.data).parent / "videos"


def dataset_options(config: PretrainConfig) -> dict:
    """Sampling settings (clips, crops) handed to the dataset's config; `sampling_options` adds more."""
    return {
        "clip_len": config.clip_len,
        "stride": config.stride,
        "size": config.size,
        "motion_sampling": config.motion_sampling,
        "motion_crop": config.motion_crop,
        "seed": config.seed,  # every draw of an item comes from (seed, epoch, index)
        **config.sampling_options,
    }


def build_dataset(config: PretrainConfig, records: list | None = None):
    """`MCLPretrainDataset` with the config's motion cache over `records` (`VideoRecord`s relative to
    the config's video root), by default the training videos of the config's split."""
    if records is None and not config.data:
        raise ConfigError("config: data= (the annotation folder) is required, e.g. data=bench/annotations")
    if not config.cache:
        raise ConfigError("config: cache= (the motion cache from `mcl prepare`) is required")
    root = _video_root(config)
    if records is None:
        records = read_split(config.dataset, config.data, split=config.split, subset="train",
                             video_root=str(root))
        if not records:
            raise ConfigError(f"{config.data}: split {config.split} of {config.dataset} has no training "
                              "videos")
    cache = MotionCache(config.cache)
    return MCLPretrainDataset(str(root), records, cache, _sampling_config(config), feature_grid(config))


def _sampling_config(config: PretrainConfig):
    """The dataset's config object, built from `dataset_options` (unknown options are an error)."""
    cls = getattr(sampling, "PretrainSamplingConfig", None)
    options = dataset_options(config)
    if cls is None or not dataclasses.is_dataclass(cls):
        return options
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"config: sampling option(s) {unknown} are not fields of {cls.__name__} "
                          f"({', '.join(sorted(names))})")
    return cls(**options)


def build_optimizer(config: PretrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD (release: momentum 0.9, wd 1e-4) or AdamW over the parameters that need gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
