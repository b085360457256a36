"""The checks around a run that protect the user's work: run folder, inputs, resume, determinism.

- A fresh run refuses a used run folder: one with checkpoints, a non-empty ``metrics.jsonl`` or files
  that are not a run's (``resume=true`` continues it, ``overwrite=true`` deletes the old run's files
  first, or choose another ``out=``). What a start that failed before its first step left
  (``config.yaml``, ``env.json``) does not count. An unwritable ``out`` is a one-line error.
- Missing ``data``/``cache`` folders, a ``size`` too small for a 2 x 2 feature grid, and a queue that
  cannot hold one step's keys are refused before anything is built.
- ``resume=true`` refuses any change of a key that alters the run's meaning (every key except
  :data:`FREE_ON_RESUME`) unless the key is named in ``resume_override=key1,key2``; the overrides are
  recorded in ``env.json`` (``resume_history``) and in every later checkpoint. The keys in
  :data:`FIXED_ON_RESUME` change the shapes of the saved weights and can never change.
- ``deterministic=true``: ``torch.use_deterministic_algorithms(True)`` and a fixed thread count.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from mcl_video.errors import DataError
from mcl_video.motion.cache import MotionCache
from mcl_video.training.builders import feature_grid
from mcl_video.training.config import ConfigError, PretrainConfig, config_to_dict

# settings that may change on resume without changing what the run computes (where it reads its data,
# how it logs, how far it goes, how fast it runs)
FREE_ON_RESUME = frozenset({
    "resume", "resume_override", "overwrite", "max_steps", "out", "num_workers", "progress", "log_every",
    "checkpoint_every", "keep_checkpoints", "tensorboard", "data", "video_root", "cache", "device",
    "deterministic", "num_threads", "channels_last", "compile",
})
# settings that change the shapes of the saved weights: a resume cannot change them at all
FIXED_ON_RESUME = frozenset({"backbone", "feat_dim", "queue_size"})
# what a run writes into its folder (all that overwrite=true deletes)
RUN_FILES = ("config.yaml", "env.json", "metrics.jsonl", "tb")
KEYS_PER_CLIP = 3  # keys k0, k1, k2 of every clip go into the queue each step


def _run_files(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        return []
    ours = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    return ours + sorted(run_dir.glob("ckpt-*.pt")) + sorted(run_dir.glob(".ckpt-*.pt.tmp-*"))


def _used(run_dir: Path) -> list[str]:
    """What makes `run_dir` a used run folder (see the module docstring)."""
    used = []
    for p in sorted(run_dir.iterdir()):
        if p.name in ("config.yaml", "env.json", "tb"):
            continue
        if p.name == "metrics.jsonl" and p.is_file() and p.stat().st_size == 0:
            continue
        used.append(p.name)
    return used


def check_run_folder(config: PretrainConfig) -> None:
    """Refuse a fresh run into a used folder (every rank calls it before any rank writes)."""
    run_dir = Path(config.out)
    if config.resume or config.overwrite or not run_dir.is_dir():
        return
    used = _used(run_dir)
    if used:
        shown = ", ".join(used[:3]) + (", ..." if len(used) > 3 else "")
        raise ConfigError(f"out={run_dir} is not empty ({shown}): continue that run with resume=true, "
                          "choose a new out=, or start over with overwrite=true")


def prepare_run_folder(config: PretrainConfig) -> Path:
    """Create the run folder (main rank); with overwrite=true delete the old run's files first."""
    run_dir = Path(config.out)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"out={run_dir}: cannot create the run folder ({err.strerror}); choose a "
                          "folder you can write to") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"out={run_dir}: the run folder is not writable; choose a folder you can write to")
    if not config.resume:  # the old run's files (overwrite=true) or what a failed start left
        for path in _run_files(run_dir):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return run_dir


def check_inputs(config: PretrainConfig) -> None:
    """The data and cache folders exist (only when the run builds its own dataset)."""
    data = Path(config.data)
    if config.data and not data.is_dir():
        raise ConfigError(f"data={config.data}: no such folder; pass the annotation folder of the split")
    split_files = config.data and (any(data.glob("*.txt")) or any(data.glob("*.csv")))
    root_given = config.dataset != "folder" and (data / "annotations").is_dir() and not split_files
    if config.data and root_given:  # a dataset root instead of its annotation folder
        raise ConfigError(f"data={config.data} holds no split files, but {data / 'annotations'} is right "
                          f"there: pass data={data / 'annotations'}")
    if not config.cache:
        return
    if not (Path(config.cache) / "meta.json").is_file():
        what = "no such folder" if not Path(config.cache).is_dir() else "not a motion cache (no meta.json)"
        raise ConfigError(f"cache={config.cache}: {what}; build it with `mcl prepare VIDEOS --out "
                          f"{config.cache}` or point cache= at one")
    try:
        MotionCache(config.cache)
    except ValueError as err:  # another format or version; the cache's message without its source path
        raise ConfigError(f"cache={config.cache}: not a motion cache this version reads "
                          f"({err})") from None


def checked_feature_grid(config: PretrainConfig) -> tuple[int, int, int]:
    """The backbone's feature grid; an unknown backbone, bad option or too small input: ConfigError."""
    try:
        return feature_grid(config)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config: backbone={config.backbone} backbone_options={config.backbone_options} "
                          f"clip_len={config.clip_len} size={config.size}: {err}") from None


def check_model_settings(config: PretrainConfig, world_size: int, grid: tuple[int, int, int] | None) -> None:
    """The queue holds one step's keys; the feature grid has >= 2 cells in space.

    Rule: ``queue_size >= 3 x batch_size x processes`` (the keys one step enqueues; the queue wraps
    around, so it need not be a multiple: the release's 131072 is not a multiple of 3).
    """
    keys = KEYS_PER_CLIP * config.batch_size * world_size
    if config.queue_size < keys:
        raise ConfigError(f"config: queue_size={config.queue_size} is smaller than the {keys} keys one step "
                          f"enqueues (3 x batch_size {config.batch_size} x {world_size} process(es)); "
                          f"use queue_size >= {keys}")
    if grid is not None and min(grid[1:]) < 2:
        raise ConfigError(f"config: size={config.size} gives a {grid[0]}x{grid[1]}x{grid[2]} feature grid; "
                          "the motion alignment needs at least 2x2 in space: use a larger size")


def resume_conflicts(config: PretrainConfig, saved: dict, current: dict, source: Path) -> dict:
    """`{key: [saved, current]}` of the allowed changes; raises for any other change of meaning."""
    allowed = set(config.resume_keys())
    # a key the saved run did not know yet (added in a later version) had its default value then
    defaults = config_to_dict(PretrainConfig())
    saved = {**{k: v for k, v in defaults.items() if k in current}, **saved}
    changed = {k: [saved.get(k), current.get(k)] for k in sorted((set(saved) | set(current)) - FREE_ON_RESUME)
               if saved.get(k) != current.get(k)}
    fixed = sorted(set(changed) & FIXED_ON_RESUME)
    if fixed:
        diff = ", ".join(f"{k}: {changed[k][0]} -> {changed[k][1]}" for k in fixed)
        raise ConfigError(f"resume from {source}: {diff} cannot change (the saved weights have the old "
                          "shapes); resume with the checkpoint's value or start a new run with another out=")
    refused = sorted(set(changed) - allowed)
    if refused:
        diff = ", ".join(f"{k}: {changed[k][0]} -> {changed[k][1]}" for k in refused)
        raise ConfigError(f"resume from {source}: changed {diff} would mix two runs in one history; resume "
                          "with the saved values, or allow it deliberately with "
                          f"resume_override={','.join(refused)}")
    return changed


def load_model_state(model: torch.nn.Module, state: dict, source: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[1:2] or [""]
        raise DataError(f"{source}: its weights do not fit this run's model ({first[0].strip()}); resume "
                        "with the settings it was written with, or start a new run with another "
                        "out=") from None


def apply_determinism(config: PretrainConfig) -> dict:
    """Thread count and deterministic algorithms as configured -> what to record in env.json."""
    threads = config.num_threads or (1 if config.deterministic else 0)
    if threads:
        torch.set_num_threads(threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return {"deterministic": bool(config.deterministic), "torch_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")}


def restore_determinism(before: bool) -> None:
    torch.use_deterministic_algorithms(before)
