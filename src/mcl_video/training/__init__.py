"""mcl_video.training: typed configs, the training engine, schedules, checkpoints, distributed helpers,
MCL pretraining."""

from mcl_video.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from mcl_video.training.config import ConfigError, PretrainConfig, load_config
from mcl_video.training.engine import NonFiniteLossError
from mcl_video.training.pretrain import pretrain
from mcl_video.training.schedule import TrainingSchedule, build_schedule, lr_schedule

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "PretrainConfig",
    "TrainingSchedule",
    "build_schedule",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "lr_schedule",
    "pretrain",
]
