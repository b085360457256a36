"""MCL pretraining on the training engine: ``pretrain(config) -> run folder``.

Per optimizer step: set the step's LR, run ``optim.grad_accum`` micro-batches through
``loss, metrics = model(batch, order_weight, mal_weight)`` (autocast for bf16/fp16), stop on a non-finite
metric, ``optimizer.step()``, then ``model.momentum_update()`` (EMA key encoder). Everything around the
step (run folder, resume, checkpoints, stop signals, logging, DDP) is the engine's
(:mod:`mcl_video.training.engine`); the checks of the inputs and of the model's settings are in
:mod:`mcl_video.training.runfolder`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from mcl_video.sampling.photometric import augment_batch
from mcl_video.training import runfolder
from mcl_video.training.builders import build_dataset, build_model, build_optimizer
from mcl_video.training.config import PretrainConfig
from mcl_video.training.distributed import DistEnv
from mcl_video.training.engine import (
    NonFiniteLossError,
    Run,
    RunInterrupted,
    Task,
    apply_gradients,
    autocast_context,
    check_finite,
    memory_format,
    train,
    wrap_ddp,
)
from mcl_video.training.schedule import TrainingSchedule, build_schedule

__all__ = ["NonFiniteLossError", "PretrainTask", "RunInterrupted", "pretrain"]


def to_device(batch: dict, device: torch.device,
              layout: torch.memory_format = torch.contiguous_format) -> dict:
    """Move the batch's tensors to ``device``, then run the photometric augmentation there (batched);
    the 5-D clips end in ``layout``."""
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    out = augment_batch(moved)
    if layout != torch.contiguous_format:
        out = {k: v.contiguous(memory_format=layout) if torch.is_tensor(v) and v.dim() == 5 else v
               for k, v in out.items()}
    return out


class PretrainTask(Task):
    """The MCL step on the motion-focused dataset. ``model``/``dataset`` replace the builders."""

    kind = "pretrain"

    def __init__(self, model: torch.nn.Module | None = None, dataset=None):
        self._model, self._dataset = model, dataset
        self.schedule: TrainingSchedule | None = None

    def check(self, config: PretrainConfig, env: DistEnv) -> None:
        self.micro_batches = config.optim.grad_accum
        if self._dataset is None:
            runfolder.check_inputs(config)
        grid = runfolder.checked_feature_grid(config) if self._model is None else None
        runfolder.check_model_settings(config, env.world_size, grid)

    def build(self, config: PretrainConfig, env: DistEnv):
        model = self._model if self._model is not None else build_model(config)
        dataset = self._dataset if self._dataset is not None else build_dataset(config)
        return model, dataset

    def build_optimizer(self, config: PretrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(config, model)

    def plan(self, config: PretrainConfig, steps_per_epoch: int) -> int:
        self.schedule = build_schedule(config, steps_per_epoch)
        return self.schedule.total_steps

    def find_unused_parameters(self, config: PretrainConfig) -> bool:
        # heads of switched-off terms receive no gradient
        return not (config.model.use_intra and config.model.use_order)

    def wrap(self, run: Run):
        # the queue and the EMA encoder are buffers: synced once, at construction, not every forward
        return wrap_ddp(run.model, run.env, self.find_unused_parameters(run.config), sync_buffers=False)

    def step(self, run: Run, batches: Iterator) -> dict[str, float]:
        cfg, step, schedule = run.config, run.step, self.schedule
        for group in run.optimizer.param_groups:
            group["lr"] = float(schedule.lr[step])
        weights = {"order_weight": float(schedule.order_weight[step]),
                   "mal_weight": float(schedule.mal_weight[step])}
        run.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        accum = cfg.optim.grad_accum
        for micro in range(accum):
            batch = next(batches)
            skipped = batch.pop("skipped", None) if isinstance(batch, dict) else None
            run.skipped += int(skipped.sum()) if skipped is not None else 0
            batch = to_device(batch, run.env.device, memory_format(cfg))
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last or run.net is run.model else run.net.no_sync()
            with sync:
                with autocast_context(cfg.run.precision, run.env.device):
                    loss, metrics = run.net(batch, **weights)
                terms = check_finite(metrics, step)
                run.scaler.scale(loss / accum).backward()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v / accum
        apply_gradients(run, cfg.optim.grad_clip)
        run.model.momentum_update()
        return {**sums, "lr": float(schedule.lr[step]), **weights, "videos_skipped": float(run.skipped)}


def pretrain(config: PretrainConfig, model: torch.nn.Module | None = None, dataset=None) -> Path:
    """Train MCL as configured; returns the run folder. ``model``/``dataset`` override the builders."""
    return train(config, PretrainTask(model, dataset)).run_dir
