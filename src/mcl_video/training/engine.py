"""The training engine: one loop for every kind of training run (pretraining, fine-tuning, the demo's
supervised bound), on one process or under torchrun.

A run is a config (:class:`~mcl_video.training.config.TrainConfig`: its ``run`` section and its
``optim.batch_size`` are what the engine reads) and a :class:`Task`, which supplies what differs: the
model, the dataset, the optimizer, the number of optimizer steps, and the step itself. The engine owns
everything else, the same way for every task:

- the run folder (a fresh run refuses a used folder; ``run.overwrite``), ``config.yaml`` and ``env.json``;
- seeding (identical initialisation on every rank, then per-rank streams), thread count, determinism;
- one resume policy (``run.resume``): a change of any key that alters the run's meaning is refused
  unless named in ``run.resume_override``; keys that change the weights' shapes never change;
- atomic checkpoints every ``run.checkpoint_every`` steps and at the end, with every rank's RNG state,
  so a resumed run continues exactly;
- one stop behaviour: SIGTERM/SIGUSR1 stop after the current step with a checkpoint and raise
  :class:`~mcl_video.training.preempt.RunStopped` (exit status 75), Ctrl-C raises
  :class:`RunInterrupted` (130);
- the epoch loader (the sampler draws from ``(seed, epoch)``; a resumed epoch skips its done batches),
  DDP, autocast, the metric log (``metrics.jsonl``, TensorBoard, a progress bar).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mcl_video.allocator import TCMALLOC_HINT, allocator_status
from mcl_video.errors import RunFailedError
from mcl_video.models import dist as process_group
from mcl_video.training import checkpoint as ckpt
from mcl_video.training import runfolder
from mcl_video.training.config import TrainConfig, config_to_dict, save_run_config
from mcl_video.training.distributed import (
    DistEnv,
    ResumableShardSampler,
    all_gather_objects,
    all_reduce_min,
    barrier,
    cleanup_distributed,
    init_distributed,
)
from mcl_video.training.logger import MetricLogger
from mcl_video.training.preempt import RunStopped, StopOnSignal, leave_stops_to_the_main_process
from mcl_video.training.schema import ConfigError

log = logging.getLogger(__name__)


class NonFiniteLossError(RunFailedError, FloatingPointError):
    """Raised (on every rank) when a loss term is NaN/inf; no checkpoint is written from that state."""


class RunInterrupted(RunFailedError):
    """Ctrl-C stopped the run after a step; its checkpoint is written. Exit status 130."""

    exit_code = 130


class Task:
    """What one kind of training supplies to the engine. Subclasses set :attr:`kind` and implement
    :meth:`build` and :meth:`step`; the other hooks have defaults."""

    kind = "train"  # recorded in env.json and in every checkpoint; names the progress bar
    collate_fn: Callable | None = None
    micro_batches = 1  # loader batches per optimizer step (gradient accumulation)

    def check(self, config, env: DistEnv) -> None:
        """Refuse bad inputs before anything is written (every rank)."""

    def build(self, config, env: DistEnv) -> tuple[torch.nn.Module, Any]:
        """``(model, training dataset)``; called after the engine seeded every rank alike."""
        raise NotImplementedError

    def memory_format(self, config) -> torch.memory_format:
        return memory_format(config)

    def build_optimizer(self, config, model: torch.nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def plan(self, config, steps_per_epoch: int) -> int:
        """Set up the schedules for ``steps_per_epoch`` optimizer steps an epoch; return the total number
        of steps they span (a run stops earlier at ``optim.max_steps``)."""
        raise NotImplementedError

    def find_unused_parameters(self, config) -> bool:
        return False

    def wrap(self, run: Run) -> torch.nn.Module:
        """The DDP wrapper of ``run.model`` (called only under torchrun)."""
        return wrap_ddp(run.model, run.env, self.find_unused_parameters(run.config))

    def step(self, run: Run, batches: Iterator) -> dict[str, float]:
        """One optimizer step over ``micro_batches`` batches of the iterator -> its metrics."""
        raise NotImplementedError

    def finish(self, run: Run) -> None:
        """After the final step's checkpoint (not after a stop): e.g. testing."""


@dataclass
class Run:
    """Everything one training run carries between steps."""

    config: TrainConfig
    task: Task
    env: DistEnv
    run_dir: Path
    model: torch.nn.Module  # unwrapped
    net: torch.nn.Module  # what the forward goes through: DDP wrapper or the model itself
    dataset: Any
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: ResumableShardSampler
    steps_per_epoch: int
    total_steps: int  # what the schedules span
    final_step: int  # where this invocation stops (max_steps)
    step: int = 0
    saved_step: int = -1  # step of the newest checkpoint this run wrote or resumed from
    skipped: int = 0  # unreadable videos the dataset replaced (this process, this session)
    run_env: dict = field(default_factory=dict)
    results: dict | None = None  # what the task's finish() produced (fine-tuning: test metrics)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_context(precision: str, device: torch.device):
    """bf16/fp16 autocast on CUDA, bf16 on CPU; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("config: run.precision=fp16 needs CUDA; on a CPU use run.precision=bf16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(config) -> torch.memory_format:
    """Layout of the weights and clips: ``channels_last_3d`` (NDHWC; faster 3D convolutions on some
    devices, see BENCHMARKS.md) when ``run.channels_last=true``, else the default contiguous one."""
    return torch.channels_last_3d if config.run.channels_last else torch.contiguous_format


def wrap_ddp(model: torch.nn.Module, env: DistEnv, find_unused: bool,
             sync_buffers: bool = True) -> DistributedDataParallel:
    """DDP; with ``sync_buffers=False`` parameters and buffers are synced from rank 0 once, at
    construction, but not before every forward (MCL's 131072-key queue would be broadcast each step)."""
    options = {}
    if not sync_buffers:
        options = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})  # torch < 2.14
    return DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None,
                                   find_unused_parameters=find_unused, **options)


def check_finite(metrics: dict[str, torch.Tensor], step: int) -> dict[str, float]:
    """The forward's metrics as floats (one device sync); stops every rank when any is NaN/inf, naming
    the term and the step (1-based, as in metrics.jsonl)."""
    names = sorted(metrics)
    values = torch.stack([metrics[k].detach().float().reshape(()) for k in names])
    finite = torch.isfinite(values)
    ok = all_reduce_min(finite.all().to(torch.int32).reshape(1))
    floats = values.tolist()
    if int(ok.item()) == 1:
        return dict(zip(names, floats))
    bad = [f"{n} = {v}" for n, v, f in zip(names, floats, finite.tolist()) if not f]
    where = f"term(s) {', '.join(bad)}" if bad else "a term on another rank"
    raise NonFiniteLossError(
        f"non-finite loss at step {step + 1}: {where}. No checkpoint was written from this state; resume "
        "from the last one (run.resume=true) with a lower optim.lr, run.precision=fp32 or a longer "
        "warm-up")


def apply_gradients(run: Run, clip: float) -> None:
    """Clip (when ``clip > 0``), step the optimizer through the grad scaler."""
    if clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()


# ------------------------------------------------------------------------------------ set-up
def _resume_state(config: TrainConfig, env: DistEnv) -> tuple[Path, dict, dict] | None:
    """``(path, state, allowed changes)`` of the newest checkpoint; raises when the resume is refused."""
    path = ckpt.latest_checkpoint(Path(config.run.out))
    if path is None:
        if env.is_main:
            log.info("run.resume=true and %s has no checkpoint yet: starting at step 0", config.run.out)
        return None
    state = ckpt.load_checkpoint(path, map_location="cpu")
    return path, state, runfolder.resume_conflicts(config, state["config"], path)


def _setup(config: TrainConfig, task: Task, env: DistEnv) -> Run:
    runfolder.check_run_folder(config)
    task.check(config, env)
    resumed = _resume_state(config, env) if config.run.resume else None  # a refused resume writes nothing
    barrier()  # every rank has checked the folder before the main rank writes into it
    run_dir = Path(config.run.out)
    run_env = {"kind": task.kind, "world_size": env.world_size, "device": str(env.device),
               **runfolder.apply_determinism(config)}
    if env.is_main:
        runfolder.prepare_run_folder(config)
    seed_everything(config.run.seed)  # identical model initialisation on every rank
    model, dataset = task.build(config, env)
    model.to(env.device, memory_format=task.memory_format(config))
    seed_everything(config.run.seed + env.rank)
    batch = config.optim.batch_size
    sampler = ResumableShardSampler(len(dataset), batch, env.rank, env.world_size, config.run.seed)
    steps_per_epoch = sampler.batches_per_epoch // task.micro_batches
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config: optim.batch_size={batch} x {env.world_size} process(es)"
            + (f" x {task.micro_batches} micro-batches" if task.micro_batches > 1 else "")
            + f" is more than the {len(dataset)} training videos; lower optim.batch_size")
    total = task.plan(config, steps_per_epoch)
    final = min(total, config.optim.max_steps) if config.optim.max_steps else total
    optimizer = task.build_optimizer(config, model)
    scaler = torch.amp.GradScaler(env.device.type, enabled=config.run.precision == "fp16")
    run = Run(config, task, env, run_dir, model, model, dataset, optimizer, scaler, sampler,
              steps_per_epoch, total, final, run_env=run_env)
    if resumed is not None:
        _resume(run, *resumed)
    if env.is_main:  # only now: a start that fails or a refused resume leaves the folder as it was
        run.run_env = save_run_config(config, run_dir, run.run_env)
    if env.distributed:
        run.net = task.wrap(run)
    return run


def _resume(run: Run, path: Path, state: dict, changed: dict) -> None:
    runfolder.load_model_state(run.model, state["model"], path)
    history = list((state.get("env") or {}).get("resume_history", []))
    history.append({"step": int(state["step"]), "checkpoint": path.name, "overrides": changed})
    run.run_env["resume_history"] = history  # in env.json and in every later checkpoint
    if run.env.is_main and changed:
        log.warning("resuming %s with overridden settings %s (recorded in env.json)", path, changed)
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.step = run.saved_step = int(state["step"])
    rngs = state.get("rng") or []
    if len(rngs) == run.env.world_size:
        ckpt.restore_rng(rngs[run.env.rank])
    else:
        log.warning("%s was written by %d process(es), this run has %d: RNG streams are reseeded, "
                    "so the continuation is not bit-exact", path, len(rngs), run.env.world_size)
        seed_everything(run.config.run.seed + run.env.rank + run.step)
    if run.env.is_main:
        log.info("resumed from %s (step %d of %d)", path, run.step, run.final_step)


def save_state(run: Run) -> Path | None:
    """Checkpoint of the current step (collective: every rank calls it, the main rank writes)."""
    rngs = all_gather_objects(ckpt.capture_rng())
    path = None
    if run.env.is_main:
        epoch, step_in_epoch = divmod(run.step, run.steps_per_epoch)
        state = {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
            "step": run.step,
            "epoch": epoch,
            "batch_in_epoch": step_in_epoch * run.task.micro_batches,
            "dataset_epoch": epoch,
            "rng": rngs,
            "config": config_to_dict(run.config),
            "env": run.run_env,
            "kind": run.task.kind,
        }
        path = ckpt.save_checkpoint(run.run_dir, state, run.config.run.keep_checkpoints)
    run.saved_step = run.step
    barrier()
    return path


# ------------------------------------------------------------------------------------ the loop
def epoch_loader(run: Run, epoch: int, step_in_epoch: int) -> DataLoader:
    """The loader of one epoch, starting after its first ``step_in_epoch`` optimizer steps."""
    run.sampler.set_epoch(epoch, start_batch=step_in_epoch * run.task.micro_batches)
    if hasattr(run.dataset, "set_epoch"):
        run.dataset.set_epoch(epoch)
    cfg = run.config
    workers = cfg.data.num_workers
    return DataLoader(
        run.dataset, batch_size=cfg.optim.batch_size, sampler=run.sampler, drop_last=True,
        num_workers=workers, pin_memory=run.env.device.type == "cuda", persistent_workers=False,
        collate_fn=run.task.collate_fn,
        worker_init_fn=leave_stops_to_the_main_process if workers else None,
        # own generator: building a loader must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.run.seed * 100003 + epoch * 1009 + run.env.rank),
    )


def train_step(run: Run, batches: Iterator) -> dict[str, float]:
    """One optimizer step of the run's task; advances ``run.step``."""
    metrics = run.task.step(run, batches)
    run.step += 1
    return metrics


def _train(run: Run, logger: MetricLogger, stop: StopOnSignal) -> bool:
    """Steps until the final one (False) or until a stop signal on any rank (True)."""
    spe, cfg = run.steps_per_epoch, run.config
    while run.step < run.final_step:
        epoch, step_in_epoch = divmod(run.step, spe)
        batches = iter(epoch_loader(run, epoch, step_in_epoch))
        for _ in range(step_in_epoch, spe):
            if run.step >= run.final_step:
                break
            t0 = time.perf_counter()
            metrics = train_step(run, batches)
            logger.step(run.step, epoch, metrics, time.perf_counter() - t0)
            # the final checkpoint is written by train() on the way out; a signal after the last step is moot
            if run.step < run.final_step and stop.requested():
                if run.env.is_main:
                    log.warning("received %s: stopping after step %d; continue with resume=true",
                                stop.received or "a stop signal on another rank", run.step)
                return True
            if run.step % cfg.run.checkpoint_every == 0 and run.step < run.final_step:
                save_state(run)
    return False


def train(config: TrainConfig, task: Task) -> Run:
    """Run ``task`` as configured; returns the finished :class:`Run` (``run.run_dir``, ``run.step``,
    ``run.results``). Raises :class:`RunStopped` / :class:`RunInterrupted` after a stop signal (with a
    checkpoint). Under torchrun (WORLD_SIZE > 1) this starts and ends the process group itself, unless
    the caller already started one."""
    started_here = not process_group.is_initialized()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    env = init_distributed(config.run.device)
    try:
        run = _setup(config, task, env)
        if env.is_main and env.device.type == "cpu" and allocator_status() == "glibc malloc":
            print(TCMALLOC_HINT, flush=True)
        logger = MetricLogger(run.run_dir, env.is_main, run.step, run.final_step, config,
                              samples_per_step=config.optim.batch_size * task.micro_batches * env.world_size,
                              device=env.device, desc=task.kind)
        try:
            with StopOnSignal() as stop:
                stopped = _train(run, logger, stop)
        finally:
            logger.close()
        if run.saved_step != run.step:  # always one checkpoint at the end
            save_state(run)
        if stopped and stop.received == "SIGINT":
            raise RunInterrupted(f"interrupted (Ctrl-C) after step {run.step}; its checkpoint is in "
                                 f"{run.run_dir}: continue with resume=true")
        if stopped:  # a non-zero exit status, so `pretrain && evaluate` does not go on
            raise RunStopped(f"stopped by {stop.received or 'a signal to another process'} after step "
                             f"{run.step} of {run.final_step}; its checkpoint is in {run.run_dir}: "
                             "continue with resume=true")
        task.finish(run)
        return run
    finally:
        torch.set_num_threads(threads)
        runfolder.restore_determinism(deterministic)
        if started_here:
            cleanup_distributed()
