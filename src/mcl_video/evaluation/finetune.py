"""Fine-tuning (the release's protocol): the whole backbone plus an FC layer behind dropout, SGD with a cosine
schedule, weight decay 1e-4, gradient clipping at 40; the test scores of each video are the softmax
probabilities averaged over all its views (several clips x 3 spatial crops).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from mcl_video.evaluation.datasets import collate_videos
from mcl_video.evaluation.probes import classification_metrics

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Release values are the defaults (epochs 150, lr 0.01, dropout 0.9); ``max_steps`` caps the
    run (the cosine then spans ``max_steps``)."""

    epochs: int = 150
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.9
    grad_clip: float = 40.0
    batch_size: int = 8
    test_batch_size: int = 2
    num_workers: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    seed: int = 0
    log_every: int = 20


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


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    """``0.5 * base_lr * (1 + cos(pi * step / total))``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


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
        raise RuntimeError("no readable test video; check the video root and the split")
    return {
        "scores": torch.cat(scores).numpy(),
        "labels": torch.cat(labels).numpy(),
        "ids": np.asarray(ids, dtype=str),
        "indices": torch.cat(indices).numpy(),
    }


def train_batches(loader, steps: int):
    """Yield ``(step, batch)`` for ``step = 0 .. steps - 1``, passing over ``loader`` as often as needed.

    Before each pass the loader's dataset gets ``set_epoch(pass)`` when it has one (fresh clip, crop and
    flip draws every pass); a ``None`` batch (no readable video in it) is skipped without using a step.
    """
    step, epoch = 0, 0
    while step < steps:
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            if step >= steps:
                break
            if batch is None:
                continue
            yield step, batch
            step += 1


def _train_views(clips: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``B x V x 3 x T x H x W`` -> ``B x 3 x T x H x W``, one random view per video."""
    pick = torch.randint(0, clips.shape[1], (clips.shape[0],), generator=gen)
    return clips[torch.arange(clips.shape[0]), pick]


def finetune(
    backbone: nn.Module,
    train_dataset,
    test_dataset,
    config: FinetuneConfig | None = None,
    num_classes: int | None = None,
) -> dict:
    """Fine-tune ``backbone`` + FC on ``train_dataset`` and test on ``test_dataset``.

    Datasets yield :class:`EvalClipDataset` items (train: ``crop="random"``; test: ``crop="three"``
    with several clips). ``num_classes`` defaults to 1 + the largest label of the records.

    Returns:
        ``{"model": VideoClassifier, "history": [{"step", "lr", "loss"}], "steps": int,
        "config": dict, "test": classification_metrics(...) with "ids"}``.
    """
    config = config or FinetuneConfig()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    if num_classes is None:
        num_classes = 1 + max(int(r.label) for r in list(train_dataset.records) + list(test_dataset.records))
    model = VideoClassifier(backbone, num_classes, config.dropout).to(config.device)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    loader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=False,
        generator=gen,
        num_workers=config.num_workers,
        collate_fn=collate_videos,
    )
    total = config.epochs * len(loader)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    history = []
    model.train()
    for step, batch in train_batches(loader, total):
        lr = cosine_lr(config.lr, step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        x = _train_views(batch["clips"], gen).to(config.device)
        loss = nn.functional.cross_entropy(model(x), batch["label"].to(config.device))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        history.append({"step": step, "lr": lr, "loss": loss.item()})
        if step % config.log_every == 0:
            log.info("finetune step %d/%d lr %.5f loss %.4f", step, total, lr, loss.item())
    pred = predict_videos(model, test_dataset, config.test_batch_size, config.device, config.num_workers)
    test = classification_metrics(pred["scores"], pred["labels"], num_classes)
    test["ids"] = pred["ids"]
    return {"model": model, "history": history, "steps": len(history), "config": asdict(config), "test": test}
