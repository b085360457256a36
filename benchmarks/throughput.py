"""Training-step throughput of the real engine on one synthetic batch kept in device memory (no
decoding: this measures the model, the loss and the optimizer): the shared part of
``step_efficiency.py``, ``pretrain_gpu.py`` and ``gpu_suite.py`` (run from this folder, which Python puts
on the import path). Tested by ``tests/test_throughput.py``."""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mcl_video.training.builders import build_model, build_optimizer, feature_grid
from mcl_video.training.config import PretrainConfig
from mcl_video.training.distributed import DistEnv, ResumableShardSampler
from mcl_video.training.loop import Run, memory_format, train_step
from mcl_video.training.schedule import build_schedule

clock = time.perf_counter  # matmul_peak's timer (a test replaces it)


def synthetic_batch(batch: int, clip_len: int, size: int, grid, device) -> dict:
    """One collated batch: `q, k0, k1, k2` B x 3 x T x H x W, `target` B x T' x H' x W', order, index."""
    g = torch.Generator().manual_seed(0)
    out = {k: torch.randn(batch, 3, clip_len, size, size, generator=g) for k in ("q", "k0", "k1", "k2")}
    out.update(target=torch.rand(batch, *grid, generator=g), order=torch.arange(batch) % 2,
               index=torch.arange(batch))
    return {k: v.to(device) for k, v in out.items()}


def bench_run(cfg: PretrainConfig, device: torch.device, total_steps: int) -> Run:
    """A world-size-1 training state of ``cfg`` on ``device`` (model in the config's memory format)
    whose schedules span ``total_steps``; feed it :func:`synthetic_batch` batches through ``train_step``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device, memory_format=memory_format(cfg))
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    schedule = build_schedule(cfg, total_steps)
    return Run(cfg, env, Path("."), model, model, build_optimizer(cfg, model),
               torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"), schedule,
               ResumableShardSampler(cfg.batch_size, cfg.batch_size), final_step=schedule.total_steps)


def bench_batches(cfg: PretrainConfig, device) -> itertools.repeat:
    """The same synthetic batch of ``cfg``'s shape forever."""
    batch = synthetic_batch(cfg.batch_size, cfg.clip_len, cfg.size, feature_grid(cfg), device)
    return itertools.repeat(batch)


def count_flops(fn, *args, **kwargs) -> float:
    """Floating-point operations of ``fn(*args, **kwargs)`` counted by ``torch.utils.flop_counter``:
    matrix products and convolutions (forward and backward) at 2 per multiply-add; nothing else."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return float(counter.get_total_flops())


def step_flops(cfg: PretrainConfig, device: torch.device) -> float:
    """Floating-point operations of one training step of ``cfg`` (forward, the alignment loss's double
    backward when on, backward, update), by :func:`count_flops`, at world size 1."""
    run = bench_run(cfg, device, 2)
    return count_flops(train_step, run, bench_batches(cfg, device))


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 4096,
                repeats: int = 5) -> float:
    """Measured FLOP/s of an ``n x n x n`` matrix product in ``dtype`` on ``device`` (the median of
    ``repeats`` timed products after one warm-up; TF32 off for float32 on CUDA): the ceiling against
    which a step's achieved rate is compared."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        times = []
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = clock()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append(clock() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / statistics.median(times)


def measure_step_rate(cfg: PretrainConfig, steps: int, warmup: int, device: torch.device) -> dict:
    """``warmup`` untimed then ``steps`` timed optimizer steps of ``cfg`` at world size 1 ->
    ``{"use_mal", "batch", "clip", "precision", "steps", "ms_per_step", "samples_per_s", "clips_per_s"
    (4 clips per sample: the query and 3 keys), "peak_gib" (CUDA only, else NaN), "loss" (last step)}``."""
    run = bench_run(cfg, device, steps + warmup)
    batches = bench_batches(cfg, device)
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
