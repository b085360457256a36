"""The supervised upper bound of the demo: the demo backbone + dropout + FC trained with labels on the
train split from a random init, with the pretraining arms' optimizer (AdamW, constant LR after a short
linear warm-up). ``finetune``'s SGD (the release's fine-tuning recipe) stayed at chance from a random
init within the demo budget (150 steps, lr 0.05: test top-1 11.7% on 8 classes), as the CPU prototypes
found for SGD (lr 0.05 stalled for 150+ steps; Adam 1e-3 trained)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from mcl_video.errors import RunFailedError
from mcl_video.evaluation.datasets import EvalClipDataset, collate_videos
from mcl_video.evaluation.finetune import VideoClassifier, predict_videos, train_batches
from mcl_video.evaluation.probes import classification_metrics
from mcl_video.models import build_backbone


def _fit(model: nn.Module, loader, steps: int, lr: float, weight_decay: float, seed: int) -> list[dict]:
    """AdamW on cross-entropy for ``steps`` steps over ``loader`` (repeated) -> ``[{"step", "loss"}]``."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 10)
    history = []
    model.train()
    bar = tqdm(total=steps, unit="step", desc="supervised", dynamic_ncols=True)
    for step, batch in train_batches(loader, steps):  # a fresh draw of clips, crops and flips every pass
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        clips = batch["clips"]  # B x V x 3 x T x H x W, one random view per video
        x = clips[torch.arange(clips.shape[0]), torch.randint(0, clips.shape[1], (clips.shape[0],),
                                                             generator=gen)]
        loss = nn.functional.cross_entropy(model(x), batch["label"])
        if not torch.isfinite(loss):
            raise RunFailedError(f"supervised upper bound: loss is {loss.item()} at step {step}; "
                                 "lower lr= in the demo config")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step, "loss": round(loss.item(), 5)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return history


def train_supervised(config, settings, work: Path, seed: int, records: dict) -> dict:
    """Train the upper bound (or reuse ``<work>/runs/supervised/backbone.pt`` when the settings match).

    ``config``: the MCL arm's ``PretrainConfig`` (backbone, clip, size, lr, weight decay);
    ``settings``: the demo profile (``supervised_steps``, ``supervised_batch_size``,
    ``supervised_dropout``, ``num_clips``, ``num_workers``). Returns ``{"backbone" (eval mode),
    "test_top1" (its own classifier, ``num_clips`` centre clips averaged), "history", "reused"}``."""
    out = work / "runs" / "supervised"
    key = {"steps": settings.supervised_steps, "batch_size": settings.supervised_batch_size,
           "dropout": settings.supervised_dropout, "optimizer": "adamw", "lr": config.lr,
           "weight_decay": config.weight_decay, "seed": seed, "backbone": config.backbone,
           "backbone_options": config.backbone_options, "clip_len": config.clip_len,
           "stride": config.stride, "size": config.size, "num_clips": settings.num_clips,
           "benchmark": json.loads((work / "data" / "meta.json").read_text())["config"]}
    key = json.loads(json.dumps(key))
    torch.manual_seed(seed)
    backbone = build_backbone(config.backbone, **config.backbone_options)
    path, saved_path = out / "backbone.pt", out / "settings.json"
    if path.is_file() and saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        if saved["key"] == key:
            backbone.load_state_dict(torch.load(path, weights_only=True))
            return {"backbone": backbone.eval(), "test_top1": saved["test_top1"],
                    "history": saved["history"], "reused": True}
    root = work / "data" / "videos"
    train = EvalClipDataset(root, records["train"], config.clip_len, config.stride, 1, config.size,
                            crop="random")
    test = EvalClipDataset(root, records["test"], config.clip_len, config.stride, settings.num_clips,
                           config.size)
    num_classes = 1 + max(int(r.label) for r in list(records["train"]) + list(records["test"]))
    model = VideoClassifier(backbone, num_classes, settings.supervised_dropout)
    loader = torch.utils.data.DataLoader(
        train, batch_size=settings.supervised_batch_size, shuffle=True, num_workers=settings.num_workers,
        collate_fn=collate_videos, generator=torch.Generator().manual_seed(seed))
    history = _fit(model, loader, settings.supervised_steps, config.lr, config.weight_decay, seed)
    pred = predict_videos(model, test, batch_size=8, num_workers=settings.num_workers)
    top1 = float(classification_metrics(pred["scores"], pred["labels"], num_classes)["top1"])
    out.mkdir(parents=True, exist_ok=True)
    torch.save(backbone.state_dict(), path)
    saved_path.write_text(json.dumps({"key": key, "test_top1": top1, "history": history}))
    return {"backbone": backbone.eval(), "test_top1": top1, "history": history, "reused": False}
