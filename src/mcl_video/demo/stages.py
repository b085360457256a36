"""The demo's reusable stages: benchmark data, motion cache, one pretraining arm, the records and the
frozen features. Each stage reuses what a previous run left in the work folder when its settings match
(the demo and the benchmark scripts built on it resume after an interruption)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import yaml

from mcl_video.data import read_split
from mcl_video.data.synth import SynthConfig, make_benchmark
from mcl_video.demo.profiles import ARMS, DemoSettings
from mcl_video.errors import DataError
from mcl_video.evaluation.datasets import EvalClipDataset
from mcl_video.evaluation.features import extract_stacked
from mcl_video.motion.cache import FORMAT, VERSION, CacheSettings
from mcl_video.motion.prepare import PrepareSummary, prepare
from mcl_video.training import PretrainConfig, latest_checkpoint, load_checkpoint, load_config, pretrain
from mcl_video.training.config import config_to_dict, flatten, replace

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- data + motion
def ensure_benchmark(data_dir: Path, options: dict) -> tuple[Path, bool]:
    """Generate the benchmark into ``data_dir`` unless its meta.json records the same options.

    Returns ``(data_dir, reused)``. A folder with other options (or a half-written one) is replaced.
    """
    wanted = SynthConfig(**options).recorded()
    meta = data_dir / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("config") == wanted:
        return data_dir, True
    if data_dir.exists() and any(data_dir.iterdir()):
        log.warning("%s holds another benchmark (or an unfinished one): regenerating it", data_dir)
    make_benchmark(data_dir, overwrite=True, progress=True, **options)
    return data_dir, False


def ensure_motion(data_dir: Path, cache_dir: Path, clip_len: int, stride: int) -> PrepareSummary:
    """DIS-flow motion cache of every train and test video (resumable); a cache built with other
    settings, or for a regenerated benchmark, is rebuilt."""
    settings = CacheSettings(flow_backend="dis", clip_len=clip_len, stride=stride, resize_short=None)
    stamp = cache_dir / "benchmark.json"
    bench = json.loads((data_dir / "meta.json").read_text())["config"]
    if cache_dir.exists() and (not stamp.is_file() or json.loads(stamp.read_text()) != bench
                               or not _same_cache_settings(cache_dir, settings)):
        shutil.rmtree(cache_dir)
    summary = prepare(data_dir / "annotations", cache_dir, settings, workers=1, dataset="ucf101",
                      video_root=data_dir / "videos")
    stamp.write_text(json.dumps(bench))
    if not summary.ok:
        video, reason = next(iter(summary.failed.items()))
        raise DataError(f"{cache_dir}: motion preparation failed for {len(summary.failed)} video(s), e.g. "
                        f"{video}: {reason}; delete {data_dir} to regenerate the benchmark")
    return summary


def _same_cache_settings(cache_dir: Path, settings: CacheSettings) -> bool:
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    return (meta.get("format"), meta.get("version"), meta.get("settings")) == (FORMAT, VERSION,
                                                                              settings.to_json())


def load_records(work: Path) -> tuple[dict, list[str], dict]:
    """Train/test ``VideoRecord``s of ``<work>/data``, the class names, and video path -> shape index
    (the appearance label) from its meta.json."""
    data = work / "data"
    records = {s: read_split("ucf101", data / "annotations", 1, s, video_root=data / "videos")
               for s in ("train", "test")}
    meta = json.loads((data / "meta.json").read_text())
    shapes = {v["path"]: meta["shapes"].index(v["shape"]) for v in meta["videos"]}
    return records, meta["classes"], shapes


# ------------------------------------------------------------------------------------------ training
def arm_config(arm: str, settings: DemoSettings, work: Path, seed: int, config: str | Path,
               arm_overrides: list[str] | None = None) -> PretrainConfig:
    """The ``PretrainConfig`` of one arm: ``config`` (a shipped config's name or a path) + the demo's
    and the arm's overrides.

    ``arm_overrides`` replaces ``ARMS[arm]`` (other arms, e.g. the ablation's); the run goes to
    ``<work>/runs/<arm>``."""
    data = work / "data"
    num_train = settings.benchmark["classes"] * settings.benchmark["train_per_class"]
    epochs = max(1, math.ceil(settings.steps * settings.batch_size / max(num_train, 1)))
    overrides = [
        f"data={data / 'annotations'}", f"video_root={data / 'videos'}", f"cache={work / 'motion'}",
        f"out={work / 'runs' / arm}", f"seed={seed}", f"batch_size={settings.batch_size}",
        f"epochs={epochs}", f"max_steps={settings.steps}", f"num_workers={settings.num_workers}",
        f"warmup_steps={max(1, settings.steps // 10)}", f"checkpoint_every={max(1, settings.steps // 2)}",
        f"log_every={max(1, min(5, settings.steps // 4))}", "tensorboard=false", "device=cpu",
        *settings.pretrain_overrides, *(ARMS[arm] if arm_overrides is None else arm_overrides),
    ]
    return load_config(config, overrides)


def _comparable(values: dict) -> dict:
    """A saved config (nested, or flat as earlier versions wrote it) without the keys that do not change
    what a run computes."""
    flat = flatten(values) if isinstance(values.get("run"), dict) else values
    return {k.split(".")[-1]: v for k, v in flat.items()
            if k.split(".")[-1] not in ("resume", "overwrite", "progress")}


def pretrain_arm(config: PretrainConfig) -> tuple[Path, Path, bool]:
    """Train (or reuse / resume) one arm -> ``(run_dir, final checkpoint, reused)``.

    A run folder whose config.yaml differs from ``config`` is deleted first (the demo owns it)."""
    run_dir = Path(config.run.out)
    saved = run_dir / "config.yaml"
    wanted = _comparable(config_to_dict(config))
    if saved.is_file() and _comparable(yaml.safe_load(saved.read_text())) != wanted:
        log.warning("%s was trained with another config: retraining", run_dir)
        shutil.rmtree(run_dir)
    last = latest_checkpoint(run_dir) if run_dir.exists() else None
    if last is not None and int(load_checkpoint(last)["step"]) >= config.optim.max_steps:
        return run_dir, last, True
    # resume what has a checkpoint; otherwise start afresh over whatever an interrupted start left
    config = replace(config, resume=last is not None, overwrite=last is None)
    pretrain(config)
    return run_dir, latest_checkpoint(run_dir), False


# ---------------------------------------------------------------------------------------- features
def extract_videos(encoders: dict, config: PretrainConfig, video_root: Path, records,
                   num_clips: int) -> tuple[dict[str, np.ndarray], dict]:
    """Frozen features of one set of videos for every encoder, decoded once ->
    ``({name: N x C}, extract_features result)`` (centre crop at the config's clip and size)."""
    s = config.sampling
    ds = EvalClipDataset(video_root, records, s.clip_len, s.stride, num_clips, s.size)
    return extract_stacked(encoders, ds, batch_size=8)


def extract_all(encoders: dict, config: PretrainConfig, records: dict, work: Path,
                num_clips: int) -> tuple[dict, dict]:
    """One decoding pass per split for all encoders -> ``({name: (train, test)}, {split: meta})``."""
    out, meta = {}, {}
    for split in ("train", "test"):
        out[split], meta[split] = extract_videos(encoders, config, work / "data" / "videos",
                                                 records[split], num_clips)
    return {k: (out["train"][k], out["test"][k]) for k in encoders}, meta
