"""The strict config of a fine-tuning run (``mcl finetune``): a flat dataclass, a flat YAML per
experiment, ``key=value`` overrides; unknown keys are an error with a did-you-mean hint (as for
pretraining, :mod:`mcl_video.training.config`).

    cfg = load_finetune_config("finetune_ucf101_r2plus1d18", ["data=/data/ucf101", "split=2"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mcl_video.evaluation.finetune import cosine_lr
from mcl_video.training.config import ConfigError, coerce_value, resolve_config_path


@dataclass
class FinetuneRunConfig:
    """Every setting of one fine-tuning run. Defaults are the release's protocol: 32-frame
    clips at stride 2, 224 crops, dropout 0.9, SGD lr 0.01 with a cosine over 150 epochs, weight decay
    1e-4, gradient clipping at 40; test = ``test_clips`` clips x 3 crops, softmax scores averaged."""

    # data
    dataset: str = "ucf101"  # ucf101 | hmdb51 | kinetics400 | folder (read_split's names)
    data: str = ""  # annotation directory (split lists)
    video_root: str = ""  # folder of the videos ("" = <data>/../videos)
    split: int = 1  # 1-3 for UCF101 / HMDB51
    out: str = "runs/finetune"  # run folder: config.yaml, env.json, metrics.jsonl, tb/, ckpt-*.pt, results
    # model
    checkpoint: str = ""  # pretrained encoder (our checkpoint or a torchvision state dict); "" = random init
    backbone: str = ""  # "" = the checkpoint's; required without a checkpoint
    backbone_options: dict = field(default_factory=dict)
    dropout: float = 0.9
    # clips
    clip_len: int = 32
    stride: int = 2
    size: int = 224
    short_side: int | str = "native"  # int: resize the short side to it; native: 240-256 px frames as is
    test_clips: int = 10
    test_crops: str = "three"  # three | center
    # optimisation
    batch_size: int = 8  # per process
    test_batch_size: int = 2  # videos per process
    num_workers: int = 4
    epochs: int = 150  # the cosine spans `epochs`; max_steps only stops early
    max_steps: int = 0
    optimizer: str = "sgd"  # sgd (the release's) | adamw (the built-in benchmark's light protocol)
    lr: float = 0.01
    warmup_steps: int = 0  # linear warm-up, then the cosine over the remaining steps
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 40.0  # 0: off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 needs CUDA)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # bookkeeping
    checkpoint_every: int = 500  # optimizer steps; a checkpoint is always written at the end
    keep_checkpoints: int = 2
    log_every: int = 20
    tensorboard: bool = True
    progress: bool = True
    resume: bool = False
    overwrite: bool = False  # a fresh run into a used out= folder deletes the old run's files first
    test: bool = True  # test (multi-clip x crops) at the end and write results.json + confusion.png

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("precision", self.precision, ("fp32", "bf16", "fp16")),
            ("device", self.device, ("auto", "cpu", "cuda")),
            ("test_crops", self.test_crops, ("three", "center")),
            ("optimizer", self.optimizer, ("sgd", "adamw")),
        ):
            if value not in choices:
                raise ConfigError(f"config: {name}={value!r} is not one of {', '.join(choices)}")
        for name in (
            "batch_size",
            "test_batch_size",
            "epochs",
            "clip_len",
            "stride",
            "size",
            "test_clips",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name}={getattr(self, name)} must be >= 1")
        if self.max_steps < 0 or self.num_workers < 0 or self.warmup_steps < 0:
            raise ConfigError("config: max_steps, num_workers and warmup_steps must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config: dropout={self.dropout} must be in [0, 1)")
        if isinstance(self.short_side, str) and self.short_side != "native":
            raise ConfigError(f"config: short_side={self.short_side!r} must be an integer or 'native'")
        if not self.checkpoint and not self.backbone:
            raise ConfigError(
                "config: set checkpoint=FILE (a pretrained encoder) or backbone=NAME (random init)"
            )


def load_finetune_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> FinetuneRunConfig:
    """Read a flat YAML (``None``: the defaults), apply ``key=value`` overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)  # a file, or a shipped name such as finetune_ucf101_r2plus1d18
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a flat mapping of key: value")
        values = {str(k): coerce_value(FinetuneRunConfig, str(k), v, str(path)) for k, v in raw.items()}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"command line: override '{item}' must look like key=value (e.g. split=2)")
        values[key] = coerce_value(FinetuneRunConfig, key, value, "command line")
    return FinetuneRunConfig(**values)


# ------------------------------------------------------------------------ optimiser and schedule
def finetune_lr(config: FinetuneRunConfig, step: int, total: int) -> float:
    """LR of optimizer step ``step`` (0-based): linear warm-up over ``warmup_steps`` (``lr * (step + 1) /
    warmup_steps``), then a cosine from ``lr`` to 0 over the remaining ``total - warmup_steps`` steps."""
    warm = min(config.warmup_steps, total)
    if step < warm:
        return config.lr * (step + 1) / warm
    return cosine_lr(config.lr, step - warm, total - warm)


def build_optimizer(config: FinetuneRunConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
