"""The pretraining loop: `pretrain(config) -> run folder`, on one process or under torchrun.

Per optimizer step: set the step's LR, run `grad_accum` micro-batches through
`loss, metrics = model(batch, order_weight, mal_weight)` (autocast for bf16/fp16), stop on a non-finite
metric, `optimizer.step()`, then `model.momentum_update()` (EMA key encoder). Checkpoints every
`checkpoint_every` steps and at the end; `resume=true` continues exactly from the newest one. The checks
that protect the run folder, the inputs and a resume's meaning are in `runfolder.py`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mcl_video.allocator import TCMALLOC_HINT, allocator_status
from mcl_video.errors import RunFailedError
from mcl_video.models import dist as process_group
from mcl_video.sampling.photometric import augment_batch
from mcl_video.training import checkpoint as ckpt
from mcl_video.training import runfolder
from mcl_video.training.builders import build_dataset, build_model, build_optimizer
from mcl_video.training.config import ConfigError, PretrainConfig, config_to_dict, save_run_config
from mcl_video.training.distributed import (
    DistEnv,
    ResumableShardSampler,
    all_gather_objects,
    all_reduce_min,
    barrier,
    cleanup_distributed,
    init_distributed,
)
from mcl_video.training.loader import build_epoch_loader
from mcl_video.training.logger import MetricLogger
from mcl_video.training.preempt import RunStopped, StopOnSignal, leave_stops_to_the_main_process
from mcl_video.training.schedule import TrainingSchedule, build_schedule

log = logging.getLogger(__name__)


class NonFiniteLossError(RunFailedError, FloatingPointError):
    """Raised (on every rank) when a loss term is NaN/inf; no checkpoint is written from that state."""


class RunInterrupted(RunFailedError):
    """Ctrl-C stopped the run after a step; its checkpoint is written. Exit status 130."""

    exit_code = 130


@dataclass
class Run:
    """Everything one training run carries between steps."""

    config: PretrainConfig
    env: DistEnv
    run_dir: Path
    model: torch.nn.Module  # the MCL module (unwrapped)
    net: torch.nn.Module  # what the forward goes through: DDP wrapper or the model itself
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: TrainingSchedule
    sampler: ResumableShardSampler
    final_step: int
    step: int = 0
    saved_step: int = -1  # step of the newest checkpoint this run wrote or resumed from
    skipped: int = 0  # unreadable videos the dataset replaced (this process, this session)
    run_env: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_context(config: PretrainConfig, device: torch.device):
    """bf16/fp16 autocast on CUDA, bf16 on CPU; nothing for fp32."""
    if config.precision == "fp32":
        return contextlib.nullcontext()
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("config: precision=fp16 needs CUDA; on a CPU use precision=bf16 or fp32")
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _needs_unused_parameter_search(config: PretrainConfig) -> bool:
    # heads of switched-off terms receive no gradient
    return not (config.use_intra and config.use_order)


def _setup(config: PretrainConfig, env: DistEnv, model, dataset) -> tuple[Run, object]:
    runfolder.check_run_folder(config)
    if dataset is None:
        runfolder.check_inputs(config)
    grid = runfolder.checked_feature_grid(config) if model is None else None
    runfolder.check_model_settings(config, env.world_size, grid)
    resumed = _resume_state(config) if config.resume else None  # a refused resume writes nothing
    barrier()  # every rank has checked the folder before the main rank writes into it
    run_dir = Path(config.out)
    run_env = {"world_size": env.world_size, "device": str(env.device), **runfolder.apply_determinism(config)}
    if env.is_main:
        runfolder.prepare_run_folder(config)
    seed_everything(config.seed)  # identical model initialisation on every rank
    model = model if model is not None else build_model(config)
    dataset = dataset if dataset is not None else build_dataset(config)
    model.to(env.device, memory_format=memory_format(config))
    seed_everything(config.seed + env.rank)
    sampler = ResumableShardSampler(len(dataset), config.batch_size, env.rank, env.world_size, config.seed)
    schedule = build_schedule(config, sampler.batches_per_epoch // config.grad_accum)
    final = min(schedule.total_steps, config.max_steps) if config.max_steps else schedule.total_steps
    optimizer = build_optimizer(config, model)
    scaler = torch.amp.GradScaler(env.device.type, enabled=config.precision == "fp16")
    run = Run(config, env, run_dir, model, model, optimizer, scaler, schedule, sampler, final,
              run_env=run_env)
    if resumed is not None:
        _resume(run, *resumed)
    if env.is_main:  # only now: a start that fails or a refused resume leaves the folder as it was
        run.run_env = save_run_config(config, run_dir, run.run_env)
    if env.distributed:
        run.net = wrap_ddp(model, env, _needs_unused_parameter_search(config))
    return run, dataset


def wrap_ddp(model: torch.nn.Module, env: DistEnv, find_unused: bool) -> DistributedDataParallel:
    """DDP that syncs parameters and buffers (queue, EMA encoder) from rank 0 once, at construction,
    but not before every forward (the 131072-key queue would be broadcast each step)."""
    no_forward_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})  # torch < 2.14
    return DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None,
                                   find_unused_parameters=find_unused, **no_forward_sync)


def _resume_state(config: PretrainConfig) -> tuple[Path, dict, dict] | None:
    """`(path, state, allowed changes)` of the newest checkpoint; raises when the resume is refused."""
    path = ckpt.latest_checkpoint(Path(config.out))
    if path is None:
        log.warning("resume=true but %s has no checkpoint: starting from step 0", config.out)
        return None
    state = ckpt.load_checkpoint(path, map_location="cpu")
    return path, state, runfolder.resume_conflicts(config, state["config"], config_to_dict(config), path)


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
        seed_everything(run.config.seed + run.env.rank + run.step)
    if run.env.is_main:
        log.info("resumed from %s (step %d of %d)", path, run.step, run.final_step)


def save_state(run: Run) -> Path | None:
    """Checkpoint of the current step (collective: every rank calls it, the main rank writes)."""
    rngs = all_gather_objects(ckpt.capture_rng())
    path = None
    if run.env.is_main:
        epoch, step_in_epoch = divmod(run.step, run.schedule.steps_per_epoch)
        state = {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
            "step": run.step,
            "epoch": epoch,
            "batch_in_epoch": step_in_epoch * run.config.grad_accum,
            "dataset_epoch": epoch,
            "rng": rngs,
            "config": config_to_dict(run.config),
            "env": run.run_env,
        }
        path = ckpt.save_checkpoint(run.run_dir, state, run.config.keep_checkpoints)
    run.saved_step = run.step
    barrier()
    return path


def memory_format(config) -> torch.memory_format:
    """Layout of the weights and clips: ``channels_last_3d`` (NDHWC; faster 3D convolutions on some
    devices, see BENCHMARKS.md) when ``channels_last=true``, else the default contiguous one."""
    return torch.channels_last_3d if config.channels_last else torch.contiguous_format


def _to_device(batch: dict, device: torch.device,
               layout: torch.memory_format = torch.contiguous_format) -> dict:
    """Move the batch's tensors to `device`, then run the photometric augmentation there (batched);
    the 5-D clips end in `layout`."""
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    out = augment_batch(moved)
    if layout != torch.contiguous_format:
        out = {k: v.contiguous(memory_format=layout) if torch.is_tensor(v) and v.dim() == 5 else v
               for k, v in out.items()}
    return out


def _check_finite(metrics: dict, step: int) -> dict[str, float]:
    """The forward's metrics (loss terms and monitors) as floats (one device sync); stops every rank when
    any is NaN/inf, naming the term and the step (1-based, as in metrics.jsonl)."""
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
        "from the last one (resume=true) with a lower lr, precision=fp32 or a longer warm-up")


def train_step(run: Run, batches) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches from the iterator `batches`."""
    cfg, step = run.config, run.step
    for group in run.optimizer.param_groups:
        group["lr"] = float(run.schedule.lr[step])
    weights = {"order_weight": float(run.schedule.order_weight[step]),
               "mal_weight": float(run.schedule.mal_weight[step])}
    run.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        batch = next(batches)
        skipped = batch.pop("skipped", None) if isinstance(batch, dict) else None
        run.skipped += int(skipped.sum()) if skipped is not None else 0
        batch = _to_device(batch, run.env.device, memory_format(cfg))
        last = micro == cfg.grad_accum - 1
        sync = contextlib.nullcontext() if last or run.net is run.model else run.net.no_sync()
        with sync:
            with autocast_context(cfg, run.env.device):
                loss, metrics = run.net(batch, **weights)
            terms = _check_finite(metrics, step)
            run.scaler.scale(loss / cfg.grad_accum).backward()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.model.momentum_update()
    run.step += 1
    return {**sums, "lr": float(run.schedule.lr[step]), **weights, "videos_skipped": float(run.skipped)}


def _epoch_loader(run: Run, dataset, epoch: int, step_in_epoch: int) -> DataLoader:
    workers = run.config.num_workers
    # persistent workers for key-aware datasets (training/loader.py); own generator: building a loader
    # must not consume the global RNG (exact resume)
    return build_epoch_loader(
        dataset, run.sampler, epoch, step_in_epoch * run.config.grad_accum,
        batch_size=run.config.batch_size, num_workers=workers, pin_memory=run.env.device.type == "cuda",
        worker_init_fn=leave_stops_to_the_main_process if workers else None,
        seed=run.config.seed * 100003 + epoch * 1009 + run.env.rank,
    )


def _train(run: Run, dataset, logger: MetricLogger, stop: StopOnSignal) -> bool:
    """Steps until the final one (False) or until a stop signal on any rank (True)."""
    spe, cfg = run.schedule.steps_per_epoch, run.config
    while run.step < run.final_step:
        epoch, step_in_epoch = divmod(run.step, spe)
        batches = iter(_epoch_loader(run, dataset, epoch, step_in_epoch))
        for _ in range(step_in_epoch, spe):
            if run.step >= run.final_step:
                break
            t0 = time.perf_counter()
            metrics = train_step(run, batches)
            logger.step(run.step, epoch, metrics, time.perf_counter() - t0)
            # the checkpoint is written by pretrain() on the way out; a signal after the last step is moot
            if run.step < run.final_step and stop.requested():
                if run.env.is_main:
                    log.warning("received %s: stopping after step %d; continue with resume=true",
                                stop.received or "a stop signal on another rank", run.step)
                return True
            if run.step % cfg.checkpoint_every == 0 and run.step < run.final_step:
                save_state(run)
    return False


def pretrain(config: PretrainConfig, model: torch.nn.Module | None = None, dataset=None) -> Path:
    """Train MCL as configured; returns the run folder. `model`/`dataset` override the builders.

    Under torchrun (WORLD_SIZE > 1) this starts and ends the process group itself, unless the caller
    already started one.
    """
    started_here = not process_group.is_initialized()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    env = init_distributed(config.device)
    try:
        run, dataset = _setup(config, env, model, dataset)
        if env.is_main and env.device.type == "cpu" and allocator_status() == "glibc malloc":
            print(TCMALLOC_HINT, flush=True)
        logger = MetricLogger(run.run_dir, env.is_main, run.step, run.final_step, config,
                              samples_per_step=config.batch_size * config.grad_accum * env.world_size,
                              device=env.device)
        try:
            with StopOnSignal() as stop:
                stopped = _train(run, dataset, logger, stop)
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
        return run.run_dir
    finally:
        torch.set_num_threads(threads)
        runfolder.restore_determinism(deterministic)
        if started_here:
            cleanup_distributed()

