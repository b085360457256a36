"""``run_finetune(config) -> run folder``: fine-tuning (whole network + FC) on the pretraining engine.

One process or torchrun DDP (:mod:`mcl_video.training.distributed`), AMP (bf16/fp16 autocast, a grad
scaler for fp16), the strict config saved with the run (``config.yaml``, ``env.json``), atomic
checkpoints with exact resume (:mod:`mcl_video.training.checkpoint`: model, optimizer, scaler, step and
every rank's RNG; training clips are drawn from ``(seed, epoch, video)``), TensorBoard and
``metrics.jsonl`` (:class:`mcl_video.training.logger.MetricLogger`), and a stop on SIGTERM/SIGUSR1 after a
checkpoint. At the end every test video is scored on ``test_clips`` clips x 3 crops (softmax averaged;
each rank scores a share) and ``results.json``, ``confusion.csv``/``.png`` and ``predictions.npz`` are
written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from mcl_video.data import read_split
from mcl_video.errors import RunFailedError
from mcl_video.evaluation.datasets import EvalClipDataset, collate_videos
from mcl_video.evaluation.encoder import load_encoder
from mcl_video.evaluation.features import merge_shards, shard_indices
from mcl_video.evaluation.finetune import VideoClassifier, predict_videos
from mcl_video.evaluation.finetune_config import FinetuneRunConfig, build_optimizer, finetune_lr
from mcl_video.evaluation.probes import classification_metrics, plot_confusion
from mcl_video.models import build_backbone
from mcl_video.training import checkpoint as ckpt
from mcl_video.training.config import ConfigError, config_to_dict, save_run_config
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
from mcl_video.training.loop import autocast_context, seed_everything
from mcl_video.training.preempt import StopOnSignal, leave_stops_to_the_main_process
from mcl_video.training.runfolder import check_run_folder, prepare_run_folder

log = logging.getLogger(__name__)

# settings that may change on resume without changing the run's course
FREE_ON_RESUME = {
    "resume",
    "max_steps",
    "out",
    "num_workers",
    "progress",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "tensorboard",
    "data",
    "video_root",
    "device",
    "test",
    "test_batch_size",
    "checkpoint",
}


@dataclass
class FinetuneRun:
    """Everything one fine-tuning run carries between steps."""

    config: FinetuneRunConfig
    env: DistEnv
    run_dir: Path
    model: VideoClassifier  # unwrapped
    net: nn.Module  # DDP wrapper or the model itself
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: ResumableShardSampler
    steps_per_epoch: int
    total_steps: int  # the cosine's length: epochs x steps per epoch
    final_step: int  # where this invocation stops (max_steps)
    step: int = 0
    saved_step: int = -1
    stopped: bool = False
    results: dict | None = None  # test metrics when the run tested
    run_env: dict = field(default_factory=dict)


def build_datasets(config: FinetuneRunConfig) -> tuple[EvalClipDataset, EvalClipDataset, list[str]]:
    """Train (one random clip and crop per video, flipped half the time) and test (``test_clips``
    uniformly spaced clips x ``test_crops``) datasets of the configured split, and the class names."""
    root = Path(config.video_root) if config.video_root else Path(config.data).parent / "videos"
    records = {}
    for subset in ("train", "test"):
        records[subset] = read_split(config.dataset, config.data, config.split, subset, video_root=str(root))
        if not records[subset]:
            raise ConfigError(
                f"{config.data}: split {config.split} of {config.dataset} has no {subset} videos "
                f"under {root} (check data= and video_root=)"
            )
    common = dict(
        clip_len=config.clip_len, stride=config.stride, size=config.size, short_side=config.short_side
    )
    train = EvalClipDataset(root, records["train"], crop="random", seed=config.seed, **common)
    test = EvalClipDataset(
        root, records["test"], num_clips=config.test_clips, crop=config.test_crops, **common
    )
    names: dict[int, str] = {}
    for r in records["train"] + records["test"]:
        names.setdefault(int(r.label), str(r.class_name))
    return train, test, [names.get(i, str(i)) for i in range(max(names) + 1)]


def build_classifier(config: FinetuneRunConfig, num_classes: int) -> VideoClassifier:
    """The pretrained (or randomly initialised) backbone + dropout + FC."""
    if config.checkpoint:
        backbone = load_encoder(
            config.checkpoint, backbone=config.backbone or None, **config.backbone_options
        )
    else:
        backbone = build_backbone(config.backbone, **config.backbone_options)
    return VideoClassifier(backbone, num_classes, config.dropout).train()


def _setup(config, env, model, train_ds) -> FinetuneRun:
    check_run_folder(config)  # a fresh run into a used folder is refused (resume=true / overwrite=true)
    run_dir = Path(config.out)
    run_env = {"world_size": env.world_size, "device": str(env.device), "kind": "finetune"}
    if env.is_main:
        prepare_run_folder(config)
        run_env = save_run_config(config, run_dir, run_env)
    model.to(env.device)
    seed_everything(config.seed + env.rank)  # dropout differs per rank
    sampler = ResumableShardSampler(len(train_ds), config.batch_size, env.rank, env.world_size, config.seed)
    spe = sampler.batches_per_epoch
    if spe < 1:
        raise ConfigError(
            f"config: batch_size={config.batch_size} x {env.world_size} process(es) is more than "
            f"the {len(train_ds)} training videos; lower batch_size"
        )
    total = config.epochs * spe
    optimizer = build_optimizer(config, model)
    scaler = torch.amp.GradScaler(env.device.type, enabled=config.precision == "fp16")
    run = FinetuneRun(
        config,
        env,
        run_dir,
        model,
        model,
        optimizer,
        scaler,
        sampler,
        spe,
        total,
        min(total, config.max_steps) if config.max_steps else total,
        run_env=run_env,
    )
    if config.resume:
        _resume(run)
    if env.distributed:
        run.net = DistributedDataParallel(
            model, device_ids=[env.device] if env.device.type == "cuda" else None
        )
    return run


def _resume(run: FinetuneRun) -> None:
    path = ckpt.latest_checkpoint(run.run_dir)
    if path is None:
        if run.env.is_main:
            log.warning("resume=true but %s has no checkpoint: starting from step 0", run.run_dir)
        return
    state = ckpt.load_checkpoint(path, map_location="cpu")
    saved, now = state["config"], config_to_dict(run.config)
    keys = sorted((set(saved) | set(now)) - FREE_ON_RESUME)
    changed = {k: (saved.get(k), now.get(k)) for k in keys if saved.get(k) != now.get(k)}
    if changed and run.env.is_main:
        log.warning("resuming %s with changed settings %s: not the run it would have been", path, changed)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.step = run.saved_step = int(state["step"])
    rngs = state.get("rng") or []
    if len(rngs) == run.env.world_size:
        ckpt.restore_rng(rngs[run.env.rank])
    else:
        log.warning(
            "%s was written by %d process(es), this run has %d: dropout is reseeded",
            path,
            len(rngs),
            run.env.world_size,
        )
        seed_everything(run.config.seed + run.env.rank + run.step)
    if run.env.is_main:
        log.info("resumed from %s (step %d of %d)", path, run.step, run.final_step)


def save_state(run: FinetuneRun) -> Path | None:
    """Checkpoint of the current step (collective; the main rank writes atomically)."""
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
            "batch_in_epoch": step_in_epoch,
            "rng": rngs,
            "config": config_to_dict(run.config),
            "env": run.run_env,
            "kind": "finetune",
        }
        path = ckpt.save_checkpoint(run.run_dir, state, run.config.keep_checkpoints)
    run.saved_step = run.step
    barrier()
    return path


def train_step(run: FinetuneRun, batch: dict | None) -> dict[str, float]:
    """One SGD step on one batch (``None``: every video of the local batch was unreadable; the step
    still takes part in the gradient all-reduce with a zero loss)."""
    cfg, device = run.config, run.env.device
    lr = finetune_lr(cfg, run.step, run.total_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    with autocast_context(cfg, device):
        if batch is None:  # through the DDP wrapper, so every rank's all-reduce still happens
            log.warning(
                "step %d: a whole local batch was unreadable; it contributes no gradient", run.step + 1
            )
            dummy = torch.zeros((1, 3, cfg.clip_len, cfg.size, cfg.size), device=device)
            loss, acc = run.net(dummy).float().sum() * 0.0, 0.0
        else:
            clips = batch["clips"][:, 0].to(device, non_blocking=True)  # one view per training item
            labels = batch["label"].to(device, non_blocking=True)
            logits = run.net(clips).float()
            loss = nn.functional.cross_entropy(logits, labels)
            acc = (logits.argmax(dim=1) == labels).float().mean().item()
    finite = all_reduce_min(torch.tensor([int(torch.isfinite(loss).item())], device=device))
    if int(finite.item()) != 1:
        raise RunFailedError(
            f"fine-tuning loss became non-finite at step {run.step + 1}; resume from the last "
            "checkpoint (resume=true) with a lower lr or precision=fp32"
        )
    run.scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.step += 1
    return {"loss": float(loss.item()), "top1": acc, "lr": lr}


def _loader(run: FinetuneRun, train_ds, epoch: int, start_batch: int) -> DataLoader:
    run.sampler.set_epoch(epoch, start_batch=start_batch)
    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(epoch)
    return DataLoader(
        train_ds,
        batch_size=run.config.batch_size,
        sampler=run.sampler,
        drop_last=True,
        num_workers=run.config.num_workers,
        collate_fn=collate_videos,
        worker_init_fn=leave_stops_to_the_main_process if run.config.num_workers else None,
        pin_memory=run.env.device.type == "cuda",
        generator=torch.Generator().manual_seed(run.config.seed * 100003 + epoch),
    )


def _train(run: FinetuneRun, train_ds, logger: MetricLogger, stop: StopOnSignal) -> None:
    while run.step < run.final_step:
        epoch, start = divmod(run.step, run.steps_per_epoch)
        for batch in _loader(run, train_ds, epoch, start):
            if run.step >= run.final_step:
                break
            t0 = time.perf_counter()
            metrics = train_step(run, batch)
            logger.step(run.step, epoch, metrics, time.perf_counter() - t0)
            if stop.requested():
                run.stopped = True
                if run.env.is_main:
                    log.warning(
                        "received %s: stopping after step %d; continue with resume=true",
                        stop.received or "a stop signal on another rank",
                        run.step,
                    )
                return
            if run.step % run.config.checkpoint_every == 0 and run.step < run.final_step:
                save_state(run)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BN running statistics) on every rank: each rank updated its own in its last
    forward, and the saved checkpoint holds rank 0's; testing must use the same (no-op on one process)."""
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)


def score_test_videos(run: FinetuneRun, test_ds, class_names: list[str] | None) -> dict:
    """Score every test video (each rank a share), gather, and (main rank) write the results."""
    cfg, env = run.config, run.env
    broadcast_buffers(run.model)
    mine = Subset(test_ds, shard_indices(len(test_ds), env.rank, env.world_size))
    local = predict_videos(
        run.model, mine, cfg.test_batch_size, env.device, cfg.num_workers, allow_empty=True
    )
    shards = all_gather_objects(
        {
            "features": local["scores"],
            "labels": local["labels"],
            "ids": local["ids"],
            "indices": local["indices"],
        }
    )
    merged = merge_shards(shards)
    metrics = classification_metrics(merged["features"], merged["labels"], run.model.fc.out_features)
    views = getattr(test_ds, "views_per_video", None)
    results = {
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "per_class": metrics["per_class"],
        "num_test": int(len(merged["labels"])),
        "views_per_video": views,
        "step": run.step,
    }
    if env.is_main:
        out = run.run_dir
        np.savetxt(out / "confusion.csv", metrics["confusion"], fmt="%d", delimiter=",")
        plot_confusion(metrics["confusion"], class_names, out / "confusion.png", title="fine-tuned, test")
        np.savez(
            out / "predictions.npz",
            scores=merged["features"],
            labels=merged["labels"],
            ids=np.asarray(merged["ids"], dtype=str),
            indices=merged["indices"],
        )
        clean = json.loads(json.dumps(results).replace("NaN", "null"))
        (out / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    return results


def run_finetune(
    config: FinetuneRunConfig,
    model: VideoClassifier | None = None,
    train_dataset=None,
    test_dataset=None,
    class_names: list[str] | None = None,
) -> FinetuneRun:
    """Fine-tune as configured; returns the finished :class:`FinetuneRun` (``run.run_dir``,
    ``run.stopped``, and ``run.results`` when tested). ``model`` and the datasets replace the builders
    (tests, notebooks). Under torchrun this starts and ends the process group unless the caller did."""
    started_here = not torch.distributed.is_initialized()
    env = init_distributed(config.device)
    try:
        if train_dataset is None:
            train_dataset, test_dataset, class_names = build_datasets(config)
        seed_everything(config.seed)  # identical classifier initialisation on every rank
        if model is None:
            labels = [int(r.label) for r in list(train_dataset.records) + list(test_dataset.records)]
            model = build_classifier(config, 1 + max(labels))
        run = _setup(config, env, model, train_dataset)
        logger = MetricLogger(
            run.run_dir,
            env.is_main,
            run.step,
            run.final_step,
            config,
            samples_per_step=config.batch_size * env.world_size,
            device=env.device,
        )
        try:
            with StopOnSignal() as stop:
                _train(run, train_dataset, logger, stop)
        finally:
            logger.close()
        if run.saved_step != run.step:
            save_state(run)
        if config.test and test_dataset is not None and not run.stopped and run.step >= run.final_step:
            run.results = score_test_videos(run, test_dataset, class_names)
        return run
    finally:
        if started_here:
            cleanup_distributed()
