"""Training-step throughput of the real engine on one synthetic batch kept in device memory (no
decoding: this measures the model, the loss and the optimizer). ``benchmarks/pretrain_gpu.py`` prints
it for MAL on and off."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch

from mcl_video.training.builders import build_model, build_optimizer, feature_grid
from mcl_video.training.config import PretrainConfig
from mcl_video.training.distributed import DistEnv, ResumableShardSampler
from mcl_video.training.loop import Run, train_step
from mcl_video.training.schedule import build_schedule


def synthetic_batch(batch: int, clip_len: int, size: int, grid, device) -> dict:
    """One collated batch: `q, k0, k1, k2` B x 3 x T x H x W, `target` B x T' x H' x W', order, index."""
    g = torch.Generator().manual_seed(0)
    out = {k: torch.randn(batch, 3, clip_len, size, size, generator=g) for k in ("q", "k0", "k1", "k2")}
    out.update(target=torch.rand(batch, *grid, generator=g), order=torch.arange(batch) % 2,
               index=torch.arange(batch))
    return {k: v.to(device) for k, v in out.items()}


def measure_step_rate(cfg: PretrainConfig, steps: int, warmup: int, device: torch.device) -> dict:
    """``warmup`` untimed then ``steps`` timed optimizer steps of ``cfg`` at world size 1 ->
    ``{"use_mal", "batch", "clip", "precision", "steps", "ms_per_step", "samples_per_s", "clips_per_s"
    (4 clips per sample: the query and 3 keys), "peak_gib" (CUDA only, else NaN), "loss" (last step)}``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    schedule = build_schedule(cfg, steps + warmup)
    run = Run(cfg, env, Path("."), model, model, build_optimizer(cfg, model),
              torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"), schedule,
              ResumableShardSampler(cfg.batch_size, cfg.batch_size), final_step=schedule.total_steps)
    batches = itertools.repeat(synthetic_batch(cfg.batch_size, cfg.clip_len, cfg.size, feature_grid(cfg),
                                               device))
    for _ in range(warmup):
        train_step(run, batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        metrics = train_step(run, batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    samples = cfg.batch_size * steps / seconds
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"use_mal": cfg.use_mal, "batch": cfg.batch_size, "clip": f"{cfg.clip_len}x{cfg.size}x{cfg.size}",
            "precision": cfg.precision, "steps": steps, "ms_per_step": 1000 * seconds / steps,
            "samples_per_s": samples, "clips_per_s": 4 * samples, "peak_gib": peak,
            "loss": metrics["loss"]}
