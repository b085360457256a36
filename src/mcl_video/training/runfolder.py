"""The checks around a run that protect the user's work: run folder, inputs, resume, determinism.

- A fresh run refuses a used run folder: one with checkpoints, a non-empty ``metrics.jsonl`` or files
  that are not a run's (``run.resume=true`` continues it, ``run.overwrite=true`` deletes the old run's
  files first, or choose another ``run.out=``). What a start that failed before its first step left
  (``config.yaml``, ``env.json``) does not count. An unwritable ``run.out`` is a one-line error.
- Pretraining: missing ``data.annotations``/``data.cache`` folders, a ``sampling.size`` too small for a
  2 x 2 feature grid, and a queue that cannot hold one step's keys are refused before anything is built.
- ``run.resume=true`` refuses any change of a key that alters the run's meaning (every key except the
  config class's ``FREE_ON_RESUME``) unless the key is named in ``run.resume_override=key1,key2``; the
  overrides are recorded in ``env.json`` (``resume_history``) and in every later checkpoint. The keys
  in ``FIXED_ON_RESUME`` change the shapes of the saved weights and can never change. Pretraining and
  fine-tuning share this rule.
- ``run.deterministic=true``: ``torch.use_deterministic_algorithms(True)`` and a fixed thread count.
- One writer per run folder: :func:`lock_run_folder` holds ``run.out/.mcl-lock`` (``mcl_video.runlock``)
  for the run; a second writer into the folder (fresh or ``resume=true``) is refused naming the holder
  (pid, host, start time), and the lock of a killed run is taken over; the lock file never makes a
  folder "used".
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from mcl_video.errors import DataError
from mcl_video.motion.cache import MotionCache
from mcl_video.runlock import LOCK_PREFIX, RunLock
from mcl_video.training.builders import feature_grid
from mcl_video.training.config import ConfigError, PretrainConfig, TrainConfig
from mcl_video.training.schema import flatten, from_dict

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
        if p.name in ("config.yaml", "env.json", "tb") or p.name.startswith(LOCK_PREFIX):
            continue
        if p.name == "metrics.jsonl" and p.is_file() and p.stat().st_size == 0:
            continue
        used.append(p.name)
    return used


def _make_run_dir(config) -> Path:
    """``run.out``, created when missing; a folder that cannot be made is a one-line ConfigError."""
    run_dir = Path(config.run.out)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"run.out={run_dir}: cannot create the run folder ({err.strerror}); choose a "
                          "folder you can write to") from None
    return run_dir


def lock_run_folder(config, what: str = "pretrain") -> RunLock:
    """Take the run folder's lock (main rank, before :func:`check_run_folder`): a context manager
    (``with lock_run_folder(config): ...``) or ``.acquire()`` / ``.release()``. ``config.run.out`` is the
    folder (created when missing); another live writer is a :class:`~mcl_video.runlock.FolderLockedError`
    naming it."""
    run_dir = _make_run_dir(config)
    return RunLock(run_dir, f"{what} run.out={run_dir}").acquire()


def check_run_folder(config: TrainConfig) -> None:
    """Refuse a fresh run into a used folder (every rank calls it before any rank writes)."""
    run_dir = Path(config.run.out)
    if config.run.resume or config.run.overwrite or not run_dir.is_dir():
        return
    used = _used(run_dir)
    if used:
        shown = ", ".join(used[:3]) + (", ..." if len(used) > 3 else "")
        raise ConfigError(f"run.out={run_dir} is not empty ({shown}): continue that run with resume=true, "
                          "choose a new run.out=, or start over with overwrite=true")


def prepare_run_folder(config: TrainConfig) -> Path:
    """Create the run folder (main rank); with overwrite=true delete the old run's files first."""
    run_dir = _make_run_dir(config)
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"run.out={run_dir}: the run folder is not writable; choose a folder you can "
                          "write to")
    if not config.run.resume:  # the old run's files (overwrite=true) or what a failed start left
        for path in _run_files(run_dir):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return run_dir


def check_inputs(config: PretrainConfig) -> None:
    """The data and cache folders exist (only when the run builds its own dataset)."""
    data = Path(config.data.annotations)
    if config.data.annotations and not data.is_dir():
        raise ConfigError(f"data.annotations={config.data.annotations}: no such folder; pass the folder of "
                          "the split lists")
    split_files = config.data.annotations and (any(data.glob("*.txt")) or any(data.glob("*.csv")))
    root_given = config.data.dataset != "folder" and (data / "annotations").is_dir() and not split_files
    if config.data.annotations and root_given:  # a dataset root instead of its annotation folder
        raise ConfigError(f"data.annotations={config.data.annotations} holds no split files, but "
                          f"{data / 'annotations'} is right "
                          f"there: pass data.annotations={data / 'annotations'}")
    if not config.data.cache:
        return
    if not (Path(config.data.cache) / "meta.json").is_file():
        cache = Path(config.data.cache)
        what = "no such folder" if not cache.is_dir() else "not a motion cache (no meta.json)"
        raise ConfigError(f"data.cache={config.data.cache}: {what}; build it with `mcl prepare VIDEOS "
                          f"--out {config.data.cache}` or point data.cache= at one")
    try:
        MotionCache(config.data.cache)
    except ValueError as err:  # another format or version; the cache's message without its source path
        raise ConfigError(f"data.cache={config.data.cache}: not a motion cache this version reads "
                          f"({err})") from None


def checked_feature_grid(config: PretrainConfig) -> tuple[int, int, int]:
    """The backbone's feature grid; an unknown backbone, bad option or too small input: ConfigError."""
    try:
        return feature_grid(config)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config: model.backbone={config.model.backbone} model.backbone_options="
                          f"{config.model.backbone_options} sampling.clip_len={config.sampling.clip_len} "
                          f"sampling.size={config.sampling.size}: {err}") from None


def check_model_settings(config: PretrainConfig, world_size: int, grid: tuple[int, int, int] | None) -> None:
    """The queue holds one step's keys; the feature grid has >= 2 cells in space.

    Rule: ``queue_size >= 3 x batch_size x processes`` (the keys one step enqueues; the queue wraps
    around, so it need not be a multiple: the release's 131072 is not a multiple of 3).
    """
    keys = KEYS_PER_CLIP * config.optim.batch_size * world_size
    if config.model.queue_size < keys:
        raise ConfigError(f"config: model.queue_size={config.model.queue_size} is smaller than the {keys} "
                          f"keys one step enqueues (3 x optim.batch_size {config.optim.batch_size} x "
                          f"{world_size} process(es)); use model.queue_size >= {keys}")
    if grid is not None and min(grid[1:]) < 2:
        raise ConfigError(f"config: sampling.size={config.sampling.size} gives a "
                          f"{grid[0]}x{grid[1]}x{grid[2]} feature grid; the motion alignment needs at least "
                          "2x2 in space: use a larger sampling.size")


def resume_conflicts(config: TrainConfig, saved: dict, source: Path) -> dict:
    """``{key: [saved, current]}`` of the allowed changes between the checkpoint's config ``saved`` (nested,
    or flat as older checkpoints hold it) and ``config``; raises for any other change of meaning.

    The rule is the config class's: keys in ``FREE_ON_RESUME`` may change, keys in ``FIXED_ON_RESUME``
    never, any other only when named in ``run.resume_override``."""
    cls = type(config)
    allowed = set(config.resume_keys())
    # a key the saved run did not know yet (added in a later version) had its default value then
    before = {**flatten(cls()), **_saved_values(cls, saved, source)}
    now = flatten(config)
    changed = {k: [before.get(k), now.get(k)] for k in sorted((set(before) | set(now)) - cls.FREE_ON_RESUME)
               if before.get(k) != now.get(k)}
    fixed = sorted(set(changed) & cls.FIXED_ON_RESUME)
    if fixed:
        diff = ", ".join(f"{k}: {changed[k][0]} -> {changed[k][1]}" for k in fixed)
        raise ConfigError(f"resume from {source}: {diff} cannot change (the saved weights have the old "
                          "shapes); resume with the checkpoint's value or start a new run with another "
                          "run.out=")
    refused = sorted(set(changed) - allowed)
    if refused:
        diff = ", ".join(f"{k}: {changed[k][0]} -> {changed[k][1]}" for k in refused)
        raise ConfigError(f"resume from {source}: changed {diff} would mix two runs in one history; resume "
                          "with the saved values, or allow it deliberately with "
                          f"run.resume_override={','.join(refused)}")
    return changed


def _saved_values(cls: type[TrainConfig], saved: dict, source: Path) -> dict:
    """The checkpoint's config as dotted keys, read by today's rules (older flat names mapped)."""
    try:
        return flatten(from_dict(cls, saved, str(source)))
    except ConfigError as err:
        raise ConfigError(f"resume from {source}: its saved config is not one this version reads ({err}); "
                          "start a new run with another run.out=") from None


def load_model_state(model: torch.nn.Module, state: dict, source: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[1:2] or [""]
        raise DataError(f"{source}: its weights do not fit this run's model ({first[0].strip()}); resume "
                        "with the settings it was written with, or start a new run with another "
                        "out=") from None


def apply_determinism(config: TrainConfig) -> dict:
    """Thread count and deterministic algorithms as configured -> what to record in env.json."""
    threads = config.run.num_threads or (1 if config.run.deterministic else 0)
    if threads:
        torch.set_num_threads(threads)
    if config.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return {"deterministic": bool(config.run.deterministic), "torch_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")}


def restore_determinism(before: bool) -> None:
    torch.use_deterministic_algorithms(before)
