"""The pretraining config: typed sections ``data``, ``model``, ``sampling``, ``optim``, ``run``.

    cfg = load_config("ucf101_p3d50", ["data.annotations=/data/ucf101/annotations", "seed=1"])
    cfg.optim.lr, cfg.sampling.motion_prob, cfg.run.out

A config is named either by a file path or by the name of a config shipped inside the package
(``mcl_video/configs/<name>.yaml``, listed by ``shipped_configs()``). Files are nested by section; a
``defaults: [base.yaml]`` list composes files; older flat files and checkpoints are read too. Keys,
types, ranges and the loading rules are in :mod:`mcl_video.training.schema`. The resolved config, the
git commit and the package versions go into the run folder (``config.yaml``, ``env.json``) and into every
checkpoint (``config_to_dict``, ``environment_info``).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, field_validator

from mcl_video.allocator import allocator_status
from mcl_video.atomic import atomic_path
from mcl_video.data.splits import DATASETS
from mcl_video.models.mcl import BROKEN_KINDS, MCLConfig
from mcl_video.objective.contrastive import ORDER_HEADS
from mcl_video.objective.saliency import SALIENCY_METHODS
from mcl_video.sampling.dataset import PretrainSamplingConfig
from mcl_video.training.schema import (
    Config,
    ConfigError,
    FiniteFloat,
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
    config_to_dict,
    describe,
    flatten,
    from_dict,
    keys,
    load,
    replace,
    resolve_config_path,
    shipped_configs,
)

__all__ = [
    "ConfigError", "PretrainConfig", "load_config", "config_to_dict", "config_from_dict", "flatten",
    "replace", "describe", "keys", "shipped_configs", "resolve_config_path", "save_run_config",
    "environment_info",
]

_MCL = MCLConfig(backbone="")  # the model's defaults: one definition, in models/mcl.py
_SAMPLING = PretrainSamplingConfig()  # the sampler's defaults: one definition, in sampling/dataset.py


# ------------------------------------------------------------------------------------ sections
class DataSection(Section):
    dataset: Literal[DATASETS] = "ucf101"
    """the split format (read_split's dataset names)"""
    annotations: str = ""
    """folder of the split lists (classInd.txt + trainlistNN.txt for ucf101)"""
    video_root: str = ""
    """folder the split's relative video paths start from ("" = <annotations>/../videos)"""
    split: PositiveInt = 1
    """split number of the lists (1-3 for UCF101/HMDB51)"""
    num_workers: NonNegativeInt = 4
    """data-loading worker processes"""


class PretrainDataSection(DataSection):
    cache: str = ""
    """motion cache written by `mcl prepare`"""


class ModelSection(Section):
    backbone: str = "p3d_resnet50"
    """backbone name (r2plus1d_18, r3d_18, p3d_resnet50, tiny_r2plus1d)"""
    backbone_options: dict[str, Any] = Field(default_factory=dict)
    """the backbone's build options (checked against the backbone when the run starts)"""


class PretrainModelSection(ModelSection):
    init: str = ""
    """2D ImageNet ResNet-50 weights (torchvision or MoCo v2 file) inflated into the backbone"""
    feat_dim: PositiveInt = _MCL.feat_dim
    queue_size: PositiveInt = _MCL.queue_size
    """keys in the queue (>= 3 x batch_size x processes)"""
    temperature: PositiveFloat = _MCL.temperature
    ema: OpenFraction = _MCL.momentum
    """momentum of the key encoder's EMA"""
    mask_same_video: bool = _MCL.mask_same_video
    use_intra: bool = _MCL.use_intra
    use_order: bool = _MCL.use_order
    use_mal: bool = _MCL.use_mal
    saliency: Literal[SALIENCY_METHODS] = _MCL.saliency
    order_head: Literal[ORDER_HEADS] = _MCL.order_head
    """linear (the release) | mlp (a hidden layer: the order term can learn)"""
    motion_broken_negatives: list[Literal[BROKEN_KINDS]] = Field(default_factory=list)
    """an ablation: kinds from shuffle, repeat ([] = none; true/false read as all/none)"""
    shuffle_bn: bool = _MCL.shuffle_bn
    sync_bn: bool = _MCL.sync_bn

    @field_validator("motion_broken_negatives", mode="before")
    @classmethod
    def _switch(cls, value):  # the former true/false switch
        if isinstance(value, bool):
            return list(BROKEN_KINDS) if value else []
        return value


class SamplingSection(Section):
    """The motion-focused sampler's settings (sampling/dataset.py's ``PretrainSamplingConfig``)."""

    clip_len: PositiveInt = 16
    """frames per clip"""
    stride: PositiveInt = _SAMPLING.stride
    """raw frames between a clip's frames"""
    size: PositiveInt = 224
    """input side in pixels"""
    motion_sampling: bool = _SAMPLING.motion_sampling
    """motion-focused temporal sampling (false: uniform)"""
    motion_crop: bool = _SAMPLING.motion_crop
    """motion-focused spatial crops (false: random resized crops)"""
    motion_prob: Fraction = _SAMPLING.motion_prob
    top_fraction: Fraction = _SAMPLING.top_fraction
    min_frames: PositiveInt | None = _SAMPLING.min_frames
    """None: 2 x clip_len x stride"""
    drop_short: bool = _SAMPLING.drop_short
    crop_scale: tuple[Fraction, Fraction] = _SAMPLING.crop_scale
    crop_ratio: tuple[PositiveFloat, PositiveFloat] = _SAMPLING.crop_ratio
    crop_tries: PositiveInt = _SAMPLING.crop_tries
    crop_size_draws: PositiveInt = _SAMPLING.crop_size_draws
    crop_top_fraction: Fraction = _SAMPLING.crop_top_fraction
    jitter: tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat, NonNegativeFloat] = _SAMPLING.jitter
    jitter_p: Fraction = _SAMPLING.jitter_p
    grayscale_p: Fraction = _SAMPLING.grayscale_p
    blur_sigma: tuple[NonNegativeFloat, NonNegativeFloat] = _SAMPLING.blur_sigma
    blur_p: Fraction = _SAMPLING.blur_p
    flip_p: Fraction = _SAMPLING.flip_p
    colour: bool = _SAMPLING.colour
    resize_short: PositiveInt | None = _SAMPLING.resize_short
    """decode at this short side (crops are rescaled); None: native"""
    max_retries: NonNegativeInt = _SAMPLING.max_retries
    """replacement videos tried for one item before giving up"""
    crop_boxes: str | None = _SAMPLING.crop_boxes
    """a built-in benchmark's meta.json: every crop is the video's motion region (the oracle-crop arm)"""


class OptimSection(Section):
    batch_size: PositiveInt = 8
    """clips per process and step"""
    epochs: PositiveInt = 200
    """the schedules span the epochs; max_steps only stops early"""
    max_steps: NonNegativeInt = 0
    """0: run all epochs"""
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: OpenFraction = 0.9
    """SGD momentum"""
    weight_decay: NonNegativeFloat = 1e-4
    warmup_steps: Int = -1
    """linear warm-up steps (pretraining: < 0 uses warmup_epochs)"""
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: NonNegativeFloat = 0.0
    """gradient norm clip (0: off)"""


class PretrainOptimSection(OptimSection):
    min_lr: NonNegativeFloat = 0.0
    """the cosine schedule's value at the last step"""
    warmup_epochs: NonNegativeFloat = 5.0
    grad_accum: PositiveInt = 1
    mal_weight_warmup: NonNegativeFloat = 2.0
    """MAL weight during the warm-up"""
    mal_weight: NonNegativeFloat = 1.0
    """MAL weight after the warm-up"""
    order_ramp: bool = True
    """order weight 0 -> 1 linearly over training; false: constant 1"""


class RunSection(Section):
    out: str = "runs/pretrain"
    """run folder: config.yaml, env.json, metrics.jsonl, tb/, ckpt-*.pt"""
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """fp16 needs CUDA"""
    channels_last: bool = False
    """NDHWC weights and clips (channels_last_3d): same math, other speed"""
    checkpoint_every: PositiveInt = 1000
    """optimizer steps between checkpoints; one is always written at the end"""
    keep_checkpoints: PositiveInt = 3
    log_every: PositiveInt = 10
    tensorboard: bool = True
    progress: bool = True
    resume: bool = False
    """continue from the newest checkpoint in out"""
    resume_override: str = ""
    """keys allowed to differ from the checkpoint's on resume, e.g. optim.lr,optim.epochs"""
    overwrite: bool = False
    """a fresh run into a used out deletes the old run's files first"""
    deterministic: bool = False
    """torch deterministic algorithms + a fixed thread count (num_threads or 1)"""
    num_threads: NonNegativeInt = 0
    """torch CPU threads; 0: torch's default"""


# ------------------------------------------------------------------------------------ the config
class TrainConfig(Config):
    """What the training engine reads of any training config (pretraining, fine-tuning)."""

    KIND: ClassVar[str] = "train"
    # where a run reads its data, how it logs, how far it goes and how fast it runs: free on resume
    FREE_ON_RESUME: ClassVar[frozenset[str]] = frozenset({
        "run.resume", "run.resume_override", "run.overwrite", "optim.max_steps", "run.out",
        "data.num_workers", "run.progress", "run.log_every", "run.checkpoint_every", "run.keep_checkpoints",
        "run.tensorboard", "data.annotations", "data.video_root", "run.device", "run.deterministic",
        "run.num_threads", "run.channels_last"})

    def check(self) -> None:
        run = self.run
        if run.resume and run.overwrite:
            raise ConfigError("config: run.resume=true and run.overwrite=true contradict each other; "
                              "choose one")
        self.resume_keys()

    def resume_keys(self) -> list[str]:
        """The dotted keys named in ``run.resume_override`` (comma-separated; short names allowed)."""
        from mcl_video.training.schema import resolve_key

        names = [k.strip() for k in str(self.run.resume_override).split(",") if k.strip()]
        return [resolve_key(type(self), k, "run.resume_override") for k in names]


class PretrainConfig(TrainConfig):
    """Every setting of one pretraining run. Defaults are the release's UCF101 run."""

    KIND: ClassVar[str] = "pretrain"
    data: PretrainDataSection = Field(default_factory=PretrainDataSection)
    model: PretrainModelSection = Field(default_factory=PretrainModelSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    optim: PretrainOptimSection = Field(default_factory=PretrainOptimSection)
    run: RunSection = Field(default_factory=RunSection)

    RENAMED: ClassVar[dict[str, str]] = {"data": "data.annotations"}
    MERGED: ClassVar[dict[str, str]] = {"sampling_options": "sampling"}
    ALIASES: ClassVar[dict[str, str]] = {
        "learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "batch": "batch_size",
        "workers": "num_workers", "arch": "backbone", "moco_k": "queue_size", "moco_t": "temperature",
        "tau": "temperature", "moco_m": "ema", "output_dir": "out", "warmup": "warmup_epochs",
        "amp": "precision", "accum_iter": "grad_accum"}
    FREE_ON_RESUME: ClassVar[frozenset[str]] = TrainConfig.FREE_ON_RESUME | {"data.cache"}
    FIXED_ON_RESUME: ClassVar[frozenset[str]] = frozenset({"model.backbone", "model.feat_dim",
                                                           "model.queue_size"})

    def check(self) -> None:
        super().check()
        if self.optim.min_lr > self.optim.lr:
            raise ConfigError(f"config: optim.min_lr={self.optim.min_lr} must not exceed "
                              f"optim.lr={self.optim.lr}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a YAML config (a path or a shipped config's name; None: the defaults), apply ``key=value``
    overrides, validate."""
    return load(PretrainConfig, path, overrides)


def config_from_dict(values: dict[str, Any], source: str = "checkpoint") -> PretrainConfig:
    """A pretraining config from saved data (nested, or flat as older checkpoints hold it)."""
    return from_dict(PretrainConfig, values, source)


def sampling_config(config: PretrainConfig) -> PretrainSamplingConfig:
    """The dataset's ``PretrainSamplingConfig``: the sampling section and the run's seed (every draw of
    an item comes from (seed, epoch, index))."""
    names = {f.name for f in dataclasses.fields(PretrainSamplingConfig)}
    values = {k: v for k, v in config.sampling.model_dump().items() if k in names}
    return PretrainSamplingConfig(**values, seed=config.run.seed)


# ------------------------------------------------------------------------------------ run records
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Git commit, Python/platform and versions of the packages a run depends on."""

    versions = {}
    for pkg in ("mcl-video", "torch", "torchvision", "numpy", "av", "opencv-contrib-python-headless",
                "scikit-learn", "scipy", "pydantic"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"git_commit": _git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "hostname": platform.node(), "packages": versions,
            "allocator": allocator_status()}


def save_run_config(config: Config, run_dir: Path, extra_env: dict | None = None) -> dict:
    """Write ``config.yaml`` (the resolved config, nested) and ``env.json`` into the run folder; returns
    the env dict."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hint = "free space or choose another run.out"
    with atomic_path(run_dir / "config.yaml", hint) as tmp:
        Path(tmp).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    env = {**environment_info(), **(extra_env or {})}
    with atomic_path(run_dir / "env.json", hint) as tmp:
        Path(tmp).write_text(json.dumps(env, indent=2) + "\n")
    return env


# keep the section types importable for the fine-tuning and evaluation configs
__all__ += ["DataSection", "ModelSection", "OptimSection", "RunSection", "SamplingSection", "TrainConfig",
            "FiniteFloat"]
