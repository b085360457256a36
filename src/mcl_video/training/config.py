"""One strict pretraining config: a flat dataclass, a flat YAML per experiment, `key=value` overrides.

    cfg = load_config("ucf101_p3d50", ["data=/data/ucf101/annotations", "seed=1"])

A config is named either by a file path or by the name of a config shipped inside the package
(`mcl_video/configs/<name>.yaml`, listed by `shipped_configs()`).

Unknown keys (in the file or on the command line) are an error with a did-you-mean suggestion. The
resolved config, the git commit and the package versions go into the run folder (`config.yaml`,
`env.json`) and into every checkpoint (`config_to_dict`, `environment_info`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import json
import platform
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from mcl_video.allocator import allocator_status
from mcl_video.errors import UsageError
from mcl_video.models.mcl import BROKEN_KINDS
from mcl_video.objective.contrastive import ORDER_HEADS
from mcl_video.objective.saliency import SALIENCY_METHODS


class ConfigError(UsageError, ValueError):
    """A config file or override that cannot be used; the message names the source and the fix."""


@dataclass
class PretrainConfig:
    """Every setting of one pretraining run. Defaults: the release's UCF101 run (SGD, lr 0.01)."""

    # data
    dataset: str = "ucf101"  # ucf101 | hmdb51 | kinetics400 | folder (read_split's dataset names)
    data: str = ""  # annotation directory (classInd.txt + trainlistNN.txt for ucf101)
    video_root: str = ""  # folder the split's relative video paths start from ("" = <data>/../videos)
    cache: str = ""  # motion cache written by `mcl prepare`
    split: int = 1
    out: str = "runs/pretrain"  # run folder: config.yaml, env.json, metrics.jsonl, tb/, ckpt-*.pt
    # model (MCLConfig)
    backbone: str = "p3d_resnet50"
    backbone_options: dict = field(default_factory=dict)
    init: str = ""  # 2D ImageNet ResNet-50 weights (torchvision or MoCo v2 file) inflated into p3d_resnet50
    feat_dim: int = 128
    queue_size: int = 131072
    temperature: float = 0.1
    ema: float = 0.999  # momentum of the key encoder's EMA
    mask_same_video: bool = True
    use_intra: bool = True
    use_order: bool = True
    use_mal: bool = True
    saliency: str = "gradient"  # gradient | gradcam
    order_head: str = "linear"  # linear (the release) | mlp (a hidden layer: the order term can learn)
    # motion-broken negatives (an ablation): kinds from shuffle, repeat, e.g. [shuffle, repeat]; [] = none.
    # true/false, the former switch, still read as [shuffle, repeat] / []
    motion_broken_negatives: list | bool = field(default_factory=list)
    shuffle_bn: bool = True
    sync_bn: bool = False
    # sampling: motion-focused clip starts and crops
    clip_len: int = 16
    stride: int = 2
    size: int = 224
    motion_sampling: bool = True
    motion_crop: bool = True
    sampling_options: dict = field(default_factory=dict)  # extra fields of the dataset's config
    # optimisation
    batch_size: int = 8  # per process
    num_workers: int = 4
    epochs: int = 200  # the schedules span `epochs`; max_steps only stops early
    max_steps: int = 0  # 0: run all epochs
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    min_lr: float = 0.0  # the cosine schedule's value at the last step
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 5.0
    warmup_steps: int = -1  # >= 0 overrides warmup_epochs
    schedule: str = "cosine"  # cosine | constant
    grad_accum: int = 1
    grad_clip: float = 0.0  # 0: off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 needs CUDA)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    channels_last: bool = False  # NDHWC weights and clips (channels_last_3d); same math, other speed
    # loss weights: L = L_inter + L_intra + w_order * L_order + lambda * L_MAL
    mal_weight_warmup: float = 2.0
    mal_weight: float = 1.0
    order_ramp: bool = True  # order weight 0 -> 1 linearly over training; False: constant 1
    # bookkeeping
    checkpoint_every: int = 1000  # optimizer steps; a checkpoint is always written at the end
    keep_checkpoints: int = 3
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True
    resume: bool = False  # continue from the newest checkpoint in `out`
    resume_override: str = ""  # keys allowed to differ from the checkpoint's on resume: "lr,epochs"
    overwrite: bool = False  # a fresh run into a non-empty `out` deletes the old run's files
    deterministic: bool = False  # torch deterministic algorithms + a fixed thread count (num_threads or 1)
    num_threads: int = 0  # torch CPU threads; 0: torch's default (the number of cores)

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("schedule", self.schedule, ("cosine", "constant"))
        _check_choice("precision", self.precision, ("fp32", "bf16", "fp16"))
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))
        _check_choice("saliency", self.saliency, SALIENCY_METHODS)
        _check_choice("order_head", self.order_head, ORDER_HEADS)
        if isinstance(self.motion_broken_negatives, bool):
            self.motion_broken_negatives = list(BROKEN_KINDS) if self.motion_broken_negatives else []
        for kind in self.motion_broken_negatives:
            _check_choice("motion_broken_negatives", kind, BROKEN_KINDS)
        for name in ("batch_size", "epochs", "grad_accum", "keep_checkpoints", "log_every",
                     "checkpoint_every", "clip_len", "stride", "size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name}={getattr(self, name)} must be >= 1")
        for name in ("max_steps", "num_workers", "num_threads", "min_lr", "weight_decay", "warmup_epochs",
                     "grad_clip", "mal_weight_warmup", "mal_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {name}={getattr(self, name)} must be >= 0")
        if self.queue_size < 1 or self.feat_dim < 1:
            raise ConfigError(f"config: queue_size={self.queue_size} and feat_dim={self.feat_dim} must be "
                              ">= 1 (the queue must hold at least 3 x batch_size x processes keys)")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"config: {name}={getattr(self, name)} must be > 0")
        if not (0 <= self.ema < 1 and 0 <= self.momentum < 1):
            raise ConfigError(f"config: ema={self.ema} and momentum={self.momentum} must be in [0, 1)")
        if self.min_lr > self.lr:
            raise ConfigError(f"config: min_lr={self.min_lr} must not exceed lr={self.lr}")
        if self.resume and self.overwrite:
            raise ConfigError("config: resume=true and overwrite=true contradict each other; choose one")
        self.resume_keys()  # checks the names

    def resume_keys(self) -> list[str]:
        """The keys named in `resume_override` (comma-separated); unknown names are an error."""
        keys = [k.strip() for k in str(self.resume_override).split(",") if k.strip()]
        for key in keys:
            if key not in config_fields():
                raise _unknown_key(key, list(config_fields()), "resume_override", ALIASES)
        return keys


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config: {name}={value!r} is not one of {', '.join(choices)}")


def config_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(PretrainConfig)}


def _field_types(config_cls: type, name: str) -> list[type]:
    """The plain types field `name` of the dataclass `config_cls` accepts, in order (`bool | str` ->
    [bool, str])."""
    tp = typing.get_type_hints(config_cls)[name]
    members = tp.__args__ if isinstance(tp, types.UnionType) else (tp,)
    return [typing.get_origin(a) or a for a in members if a is not type(None)]


# names other code bases use for the same settings -> ours (only for did-you-mean hints)
ALIASES = {"learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "batch": "batch_size",
           "workers": "num_workers", "arch": "backbone", "model": "backbone", "moco_k": "queue_size",
           "moco_t": "temperature", "tau": "temperature", "moco_m": "ema", "output_dir": "out",
           "warmup": "warmup_epochs", "amp": "precision", "accum_iter": "grad_accum"}


def _unknown_key(key: str, names: list[str], source: str, aliases: dict[str, str]) -> ConfigError:
    close = difflib.get_close_matches(key, names + list(aliases), n=1)
    close = [aliases.get(c, c) for c in close]
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
    return ConfigError(f"{source}: unknown config key '{key}'{hint}")


def coerce_value(config_cls: type, key: str, value: Any, source: str = "config",
                 aliases: dict[str, str] | None = None) -> Any:
    """Convert `value` (a YAML value or a command-line string) to the type of field `key` of the config
    dataclass `config_cls` (`PretrainConfig`, the fine-tuning config). An unknown key or a value that
    does not convert is a `ConfigError` naming `source`; the did-you-mean hint for an unknown key also
    looks at `aliases` (other code bases' names -> ours)."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    if key not in names:
        raise _unknown_key(key, names, source, aliases or {})
    tps = _field_types(config_cls, key)
    if isinstance(value, str) and tps != [str]:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: cannot parse {key}={value!r}: {e}") from e
    for tp in tps:
        ok, out = _convert(value, tp)
        if ok:
            return out
    names = " or ".join(t.__name__ for t in tps)
    raise ConfigError(f"{source}: {key}={value!r} is not a valid {names}")


def _convert(value: Any, tp: type) -> tuple[bool, Any]:
    if tp in (int, float) and isinstance(value, str):  # YAML 1.1 reads "2e-3" as a string
        try:
            value = float(value)
        except ValueError:
            return False, None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if tp is bool:
        if isinstance(value, bool):
            return True, value
        if isinstance(value, int) and value in (0, 1):
            return True, bool(value)
    elif tp is float and is_number:
        return True, float(value)
    elif tp is int and is_number and float(value).is_integer():
        return True, int(value)
    elif tp is str and not isinstance(value, dict | list):
        return True, "" if value is None else str(value)
    elif tp is dict and isinstance(value, dict):
        return True, dict(value)
    elif tp is list and isinstance(value, list | tuple):
        return True, list(value)
    return False, None


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """`["seed=1", "resume=true"]` -> {"seed": 1, "resume": True}, typed by the dataclass fields."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"command line: override '{item}' must look like key=value (e.g. seed=1)")
        out[key] = coerce_value(PretrainConfig, key, value, "command line", ALIASES)
    return out


def shipped_configs() -> dict[str, Path]:
    """The configs shipped inside the package: name (file stem) -> path, sorted by name."""
    folder = importlib.resources.files("mcl_video") / "configs"
    return {p.name[: -len(".yaml")]: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """An existing file, else the shipped config of that name (`demo_cpu` or `demo_cpu.yaml`; also
    `configs/demo_cpu.yaml`, where the shipped configs were in the repository before they moved into
    the package)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name.removesuffix(".yaml")
    if path.parent in (Path("."), Path("configs")) and name in shipped:
        return shipped[name]
    raise ConfigError(f"{name_or_path}: config file not found; give a path to a YAML file or the name of "
                      f"a shipped config ({', '.join(shipped)})")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a flat YAML (a path or a shipped config's name; None: the defaults), apply `key=value`
    overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a flat mapping of key: value")
        values = {k: coerce_value(PretrainConfig, str(k), v, str(path), ALIASES) for k, v in raw.items()}
    values.update(parse_overrides(overrides))
    return PretrainConfig(**values)


def config_to_dict(config: PretrainConfig) -> dict[str, Any]:
    """Plain dict (primitives and plain containers only: safe for `torch.load(weights_only=True)`)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(values: dict[str, Any], source: str = "checkpoint") -> PretrainConfig:
    return PretrainConfig(**{k: coerce_value(PretrainConfig, k, v, source, ALIASES)
                             for k, v in values.items()})


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
                "scikit-learn", "scipy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"git_commit": _git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "hostname": platform.node(), "packages": versions,
            "allocator": allocator_status()}


def save_run_config(config: PretrainConfig, run_dir: Path, extra_env: dict | None = None) -> dict:
    """Write `config.yaml` and `env.json` into the run folder; returns the env dict."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    env = {**environment_info(), **(extra_env or {})}
    (run_dir / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    return env
