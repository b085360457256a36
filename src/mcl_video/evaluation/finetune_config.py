"""The config of a fine-tuning run (``mcl finetune``): typed sections as for pretraining
(:mod:`mcl_video.training.config`), with a ``test`` section for the multi-view test.

    cfg = load_finetune_config("finetune_ucf101_r2plus1d18", ["data.annotations=/data/ucf101", "split=2"])

The shipped fine-tuning configs are one base (``finetune_release.yaml``: the release's protocol) plus
a file per dataset and backbone that names it in ``defaults:`` and sets what differs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from mcl_video.training.config import (
    DataSection,
    ModelSection,
    OptimSection,
    RunSection,
    TrainConfig,
)
from mcl_video.training.schema import (
    ConfigError,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveInt,
    Section,
    from_dict,
    load,
)


class FinetuneModelSection(ModelSection):
    checkpoint: str = ""
    """pretrained encoder (our checkpoint or a torchvision state dict); "" = random init"""
    backbone: str = ""
    """"" = the checkpoint's; required without a checkpoint"""
    dropout: OpenFraction = 0.9
    """dropout before the FC layer"""


class FinetuneSamplingSection(Section):
    clip_len: PositiveInt = 32
    """frames per clip"""
    stride: PositiveInt = 2
    """raw frames between a clip's frames"""
    size: PositiveInt = 224
    """crop side in pixels"""
    short_side: PositiveInt | Literal["native"] = "native"
    """int: resize the short side to it; native: 240-256 px frames as decoded"""


class FinetuneOptimSection(OptimSection):
    epochs: PositiveInt = 150
    warmup_steps: NonNegativeInt = 0
    """linear warm-up steps, then the schedule over the remaining steps"""
    grad_clip: NonNegativeFloat = 40.0
    """gradient norm clip (0: off)"""


class TestSection(Section):
    __test__ = False  # not a pytest class

    enabled: bool = True
    """test (multi-clip x crops) at the end and write results.json + confusion.png"""
    clips: PositiveInt = 10
    """uniformly spaced clips per test video"""
    crops: Literal["three", "center"] = "three"
    videos_per_batch: PositiveInt = 2
    """test videos per process and batch"""


class FinetuneRunSection(RunSection):
    out: str = "runs/finetune"
    """run folder: config.yaml, env.json, metrics.jsonl, tb/, ckpt-*.pt, results"""
    checkpoint_every: PositiveInt = 500
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 20


class FinetuneConfig(TrainConfig):
    """Every setting of one fine-tuning run. Defaults are the release's protocol: 32-frame clips at
    stride 2, 224 crops, dropout 0.9, SGD lr 0.01 with a cosine over 150 epochs, weight decay 1e-4,
    gradient clipping at 40; test = ``test.clips`` clips x 3 crops, softmax scores averaged."""

    KIND: ClassVar[str] = "finetune"
    data: DataSection = Field(default_factory=DataSection)
    model: FinetuneModelSection = Field(default_factory=FinetuneModelSection)
    sampling: FinetuneSamplingSection = Field(default_factory=FinetuneSamplingSection)
    optim: FinetuneOptimSection = Field(default_factory=FinetuneOptimSection)
    test: TestSection = Field(default_factory=TestSection)
    run: FinetuneRunSection = Field(default_factory=FinetuneRunSection)

    RENAMED: ClassVar[dict[str, str]] = {"data": "data.annotations", "test": "test.enabled",
                                         "test_clips": "test.clips", "test_crops": "test.crops",
                                         "test_batch_size": "test.videos_per_batch"}
    ALIASES: ClassVar[dict[str, str]] = {"learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay",
                                         "drop_out": "dropout", "workers": "num_workers", "arch": "backbone",
                                         "output_dir": "out", "amp": "precision"}
    FREE_ON_RESUME: ClassVar[frozenset[str]] = TrainConfig.FREE_ON_RESUME | {
        "test.enabled", "test.videos_per_batch", "model.checkpoint"}
    FIXED_ON_RESUME: ClassVar[frozenset[str]] = frozenset({"model.backbone"})

    def check(self) -> None:
        super().check()
        if not self.model.checkpoint and not self.model.backbone:
            raise ConfigError("config: set model.checkpoint=FILE (a pretrained encoder) or "
                              "model.backbone=NAME (random init)")


# the former name of the fine-tuning config class
FinetuneRunConfig = FinetuneConfig


def load_finetune_config(path: str | Path | None = None,
                         overrides: list[str] | None = None) -> FinetuneConfig:
    """Read a YAML config (a path or a shipped name such as ``finetune_ucf101_r2plus1d18``; ``None``:
    the defaults), apply ``key=value`` overrides, validate."""
    return load(FinetuneConfig, path, overrides)


def finetune_config_from_dict(values: dict, source: str = "checkpoint") -> FinetuneConfig:
    return from_dict(FinetuneConfig, values, source)


# ------------------------------------------------------------------------ optimiser and schedule
def cosine_lr(base_lr: float, step: int, total: int) -> float:
    """``0.5 * base_lr * (1 + cos(pi * step / total))``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def finetune_lr(config: FinetuneConfig, step: int, total: int) -> float:
    """LR of optimizer step ``step`` (0-based): linear warm-up over ``optim.warmup_steps`` (``lr * (step +
    1) / warmup_steps``), then a cosine from ``lr`` to 0 over the remaining ``total - warmup_steps`` steps
    (``optim.schedule=constant``: ``lr`` after the warm-up)."""
    opt = config.optim
    warm = min(opt.warmup_steps, total)
    if step < warm:
        return opt.lr * (step + 1) / warm
    if opt.schedule == "constant":
        return opt.lr
    return cosine_lr(opt.lr, step - warm, total - warm)


def build_optimizer(config: FinetuneConfig, model: nn.Module) -> torch.optim.Optimizer:
    opt = config.optim
    if opt.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum,
                           weight_decay=opt.weight_decay)
