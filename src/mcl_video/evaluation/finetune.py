"""Fine-tuning on the training engine: ``run_finetune(config) -> Run``.

The whole backbone plus an FC layer behind dropout, trained with cross-entropy on one random clip and
crop per training video (SGD with a cosine by default: the release's protocol; AdamW and a constant LR
for the built-in benchmark's light protocol and the demo's supervised bound). At the end every test
video is scored on ``test.clips`` clips x 3 crops (softmax averaged over the views; each rank scores a
share) and ``results.json``, ``confusion.csv``/``.png`` and ``predictions.npz`` are written.

Run folder, resume (the same rule as pretraining), checkpoints, stop signals, logging, AMP and DDP are
the engine's (:mod:`mcl_video.training.engine`); this module supplies the step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from mcl_video.data import read_split
from mcl_video.errors import RunFailedError
from mcl_video.evaluation.datasets import EvalClipDataset, collate_videos
from mcl_video.evaluation.encoder import load_encoder
from mcl_video.evaluation.features import merge_shards, shard_indices
from mcl_video.evaluation.finetune_config import (
    FinetuneConfig,
    build_optimizer,
    cosine_lr,
    finetune_lr,
    load_finetune_config,
)
from mcl_video.evaluation.probes import classification_metrics, plot_confusion
from mcl_video.models import build_backbone
from mcl_video.training.distributed import DistEnv, all_gather_objects, all_reduce_min
from mcl_video.training.engine import Run, Task, apply_gradients, autocast_context, train
from mcl_video.training.schema import ConfigError

log = logging.getLogger(__name__)

__all__ = ["FinetuneConfig", "FinetuneTask", "VideoClassifier", "build_classifier", "build_datasets",
           "cosine_lr", "finetune_lr", "load_finetune_config", "predict_videos", "run_finetune"]


class VideoClassifier(nn.Module):
    """``backbone`` -> dropout -> FC. ``forward``: ``B x 3 x T x H x W`` -> ``B x num_classes`` logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.9):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.num_features, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))


@torch.no_grad()
def predict_videos(
    model: nn.Module,
    dataset,
    batch_size: int = 2,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    allow_empty: bool = False,
) -> dict:
    """Per-video class scores: softmax over each view, averaged over the video's V views.

    Returns:
        ``{"scores": N x K float64, "labels": N, "ids": N str, "indices": N}`` for the readable videos
        (N = 0 allowed only with ``allow_empty``: e.g. one rank's share of a sharded test set).
    """
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_videos
    )
    was_training = model.training
    model.eval()
    scores, labels, ids, indices = [], [], [], []
    for batch in loader:
        if batch is None:
            continue
        b, v = batch["clips"].shape[:2]
        logits = model(batch["clips"].flatten(0, 1).to(device)).float().cpu()  # (B*V) x K
        scores.append(logits.softmax(dim=1).view(b, v, -1).mean(dim=1).double())
        labels.append(batch["label"])
        indices.append(batch["index"])
        ids.extend(batch["video_id"])
    model.train(was_training)
    if not scores and allow_empty:
        k = model.fc.out_features if hasattr(model, "fc") else 0
        return {
            "scores": np.zeros((0, k)),
            "labels": np.zeros(0, np.int64),
            "ids": np.zeros(0, dtype=str),
            "indices": np.zeros(0, np.int64),
        }
    if not scores:
        raise RunFailedError("no readable test video; check data.video_root and the split")
    return {
        "scores": torch.cat(scores).numpy(),
        "labels": torch.cat(labels).numpy(),
        "ids": np.asarray(ids, dtype=str),
        "indices": torch.cat(indices).numpy(),
    }


def build_datasets(config: FinetuneConfig) -> tuple[EvalClipDataset, EvalClipDataset, list[str]]:
    """Train (one random clip and crop per video, flipped half the time) and test (``test.clips``
    uniformly spaced clips x ``test.crops``) datasets of the configured split, and the class names."""
    data = config.data
    root = Path(data.video_root) if data.video_root else Path(data.annotations).parent / "videos"
    records = {}
    for subset in ("train", "test"):
        records[subset] = read_split(data.dataset, data.annotations, data.split, subset, video_root=str(root))
        if not records[subset]:
            raise ConfigError(
                f"{data.annotations}: split {data.split} of {data.dataset} has no {subset} videos "
                f"under {root} (check data.annotations= and data.video_root=)"
            )
    s = config.sampling
    common = dict(clip_len=s.clip_len, stride=s.stride, size=s.size, short_side=s.short_side)
    train = EvalClipDataset(root, records["train"], crop="random", seed=config.run.seed, **common)
    test = EvalClipDataset(root, records["test"], num_clips=config.test.clips, crop=config.test.crops,
                           **common)
    names: dict[int, str] = {}
    for r in records["train"] + records["test"]:
        names.setdefault(int(r.label), str(r.class_name))
    return train, test, [names.get(i, str(i)) for i in range(max(names) + 1)]


def build_classifier(config: FinetuneConfig, num_classes: int) -> VideoClassifier:
    """The pretrained (or randomly initialised) backbone + dropout + FC."""
    m = config.model
    if m.checkpoint:
        backbone = load_encoder(m.checkpoint, backbone=m.backbone or None, **m.backbone_options)
    else:
        backbone = build_backbone(m.backbone, **m.backbone_options)
    return VideoClassifier(backbone, num_classes, m.dropout).train()


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BN running statistics) on every rank: each rank updated its own in its last
    forward, and the saved checkpoint holds rank 0's; testing must use the same (no-op on one process)."""
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)


class FinetuneTask(Task):
    """The classifier step. ``model`` and the datasets replace the builders (tests, notebooks, the demo)."""

    kind = "finetune"
    collate_fn = staticmethod(collate_videos)

    def __init__(self, model: VideoClassifier | None = None, train_dataset=None, test_dataset=None,
                 class_names: list[str] | None = None):
        self._model, self.train_dataset, self.test_dataset = model, train_dataset, test_dataset
        self.class_names = class_names
        self.total = 0

    def build(self, config: FinetuneConfig, env: DistEnv):
        if self.train_dataset is None:
            self.train_dataset, self.test_dataset, self.class_names = build_datasets(config)
        model = self._model
        if model is None:
            records = list(self.train_dataset.records) + list(getattr(self.test_dataset, "records", []))
            model = build_classifier(config, 1 + max(int(r.label) for r in records))
        return model, self.train_dataset

    def memory_format(self, config: FinetuneConfig) -> torch.memory_format:
        return torch.contiguous_format  # clips arrive NCDHW from the loader

    def build_optimizer(self, config: FinetuneConfig, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(config, model)

    def plan(self, config: FinetuneConfig, steps_per_epoch: int) -> int:
        self.total = config.optim.epochs * steps_per_epoch
        return self.total

    def step(self, run: Run, batches: Iterator) -> dict[str, float]:
        """One step on one batch (``None``: every video of the local batch was unreadable; the step still
        takes part in the gradient all-reduce with a zero loss)."""
        cfg, device = run.config, run.env.device
        batch = next(batches)
        lr = finetune_lr(cfg, run.step, self.total)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        run.optimizer.zero_grad(set_to_none=True)
        with autocast_context(cfg.run.precision, device):
            if batch is None:  # through the DDP wrapper, so every rank's all-reduce still happens
                log.warning("step %d: a whole local batch was unreadable; it contributes no gradient",
                            run.step + 1)
                s = cfg.sampling
                dummy = torch.zeros((1, 3, s.clip_len, s.size, s.size), device=device)
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
                "checkpoint (resume=true) with a lower optim.lr or run.precision=fp32")
        run.scaler.scale(loss).backward()
        apply_gradients(run, cfg.optim.grad_clip)
        return {"loss": float(loss.item()), "top1": acc, "lr": lr}

    def finish(self, run: Run) -> None:
        if run.config.test.enabled and self.test_dataset is not None and run.step >= run.final_step:
            run.results = score_test_videos(run, self.test_dataset, self.class_names)


def score_test_videos(run: Run, test_ds, class_names: list[str] | None) -> dict:
    """Score every test video (each rank a share), gather, and (main rank) write the results."""
    cfg, env = run.config, run.env
    broadcast_buffers(run.model)
    mine = Subset(test_ds, shard_indices(len(test_ds), env.rank, env.world_size))
    local = predict_videos(run.model, mine, cfg.test.videos_per_batch, env.device, cfg.data.num_workers,
                           allow_empty=True)
    shards = all_gather_objects({"features": local["scores"], "labels": local["labels"],
                                 "ids": local["ids"], "indices": local["indices"]})
    merged = merge_shards(shards)
    metrics = classification_metrics(merged["features"], merged["labels"], run.model.fc.out_features)
    results = {
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "per_class": metrics["per_class"],
        "num_test": int(len(merged["labels"])),
        "views_per_video": getattr(test_ds, "views_per_video", None),
        "step": run.step,
    }
    if env.is_main:
        out = run.run_dir
        np.savetxt(out / "confusion.csv", metrics["confusion"], fmt="%d", delimiter=",")
        plot_confusion(metrics["confusion"], class_names, out / "confusion.png", title="fine-tuned, test")
        np.savez(out / "predictions.npz", scores=merged["features"], labels=merged["labels"],
                 ids=np.asarray(merged["ids"], dtype=str), indices=merged["indices"])
        clean = json.loads(json.dumps(results).replace("NaN", "null"))
        (out / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    return results


def run_finetune(config: FinetuneConfig, model: VideoClassifier | None = None, train_dataset=None,
                 test_dataset=None, class_names: list[str] | None = None) -> Run:
    """Fine-tune as configured; returns the finished engine :class:`~mcl_video.training.engine.Run`
    (``run.run_dir``, ``run.step``, ``run.model``, and ``run.results`` when tested). A stop signal raises
    :class:`~mcl_video.training.preempt.RunStopped` after its checkpoint, as in pretraining. ``model``
    and the datasets replace the builders (tests, notebooks). Under torchrun this starts and ends the
    process group unless the caller did."""
    return train(config, FinetuneTask(model, train_dataset, test_dataset, class_names))
