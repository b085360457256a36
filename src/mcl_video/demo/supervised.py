"""The supervised upper bound of the demo: the demo backbone + dropout + FC trained with labels on the
train split from a random init, on the fine-tuning engine with the pretraining arms' optimizer (AdamW,
constant LR after a linear warm-up over the first tenth of the steps, no gradient clipping). The release's
fine-tuning recipe (SGD) stayed at chance from a random init within the demo budget (150 steps, lr 0.05:
test top-1 11.7% on 8 classes), as the project's CPU prototypes found for SGD."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from mcl_video.evaluation.datasets import EvalClipDataset
from mcl_video.evaluation.finetune import VideoClassifier, run_finetune
from mcl_video.evaluation.finetune_config import FinetuneConfig
from mcl_video.models import build_backbone


def supervised_config(config, settings, out: Path, seed: int, num_train: int) -> FinetuneConfig:
    """The fine-tuning config of the bound: ``settings.supervised_steps`` AdamW steps at the arm's lr."""
    batch = settings.supervised_batch_size
    steps_per_epoch = max(1, num_train // batch)
    steps = settings.supervised_steps
    return FinetuneConfig(
        model={"backbone": config.model.backbone, "backbone_options": config.model.backbone_options,
               "dropout": settings.supervised_dropout},
        sampling={"clip_len": config.sampling.clip_len, "stride": config.sampling.stride,
                  "size": config.sampling.size},
        optim={"batch_size": batch, "epochs": math.ceil(steps / steps_per_epoch), "max_steps": steps,
               "optimizer": "adamw", "lr": config.optim.lr, "weight_decay": config.optim.weight_decay,
               "warmup_steps": max(1, steps // 10), "schedule": "constant", "grad_clip": 0.0},
        test={"clips": settings.num_clips, "crops": "center", "videos_per_batch": 8},
        data={"num_workers": settings.num_workers},
        run={"out": str(out), "seed": seed, "device": "cpu", "overwrite": True, "tensorboard": False,
             "log_every": 1, "checkpoint_every": max(1, steps), "keep_checkpoints": 1},
    )


def train_supervised(config, settings, work: Path, seed: int, records: dict) -> dict:
    """Train the upper bound (or reuse ``<work>/runs/supervised/backbone.pt`` when the settings match).

    ``config``: the MCL arm's ``PretrainConfig`` (backbone, clip, size, lr, weight decay);
    ``settings``: the demo profile (``supervised_steps``, ``supervised_batch_size``,
    ``supervised_dropout``, ``num_clips``, ``num_workers``). Returns ``{"backbone" (eval mode),
    "test_top1" (its own classifier, ``num_clips`` centre clips averaged), "history", "reused"}``."""
    out = work / "runs" / "supervised"
    key = {"steps": settings.supervised_steps, "batch_size": settings.supervised_batch_size,
           "dropout": settings.supervised_dropout, "optimizer": "adamw", "lr": config.optim.lr,
           "weight_decay": config.optim.weight_decay, "seed": seed, "backbone": config.model.backbone,
           "backbone_options": config.model.backbone_options, "clip_len": config.sampling.clip_len,
           "stride": config.sampling.stride, "size": config.sampling.size, "num_clips": settings.num_clips,
           "engine": "finetune",  # trained by run_finetune (earlier versions: a loop of their own)
           "benchmark": json.loads((work / "data" / "meta.json").read_text())["config"]}
    key = json.loads(json.dumps(key))
    torch.manual_seed(seed)
    backbone = build_backbone(config.model.backbone, **config.model.backbone_options)
    path, saved_path = out / "backbone.pt", out / "settings.json"
    if path.is_file() and saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        if saved["key"] == key:
            backbone.load_state_dict(torch.load(path, weights_only=True))
            return {"backbone": backbone.eval(), "test_top1": saved["test_top1"],
                    "history": saved["history"], "reused": True}
    root = work / "data" / "videos"
    s = config.sampling
    train = EvalClipDataset(root, records["train"], s.clip_len, s.stride, 1, s.size, crop="random", seed=seed)
    test = EvalClipDataset(root, records["test"], s.clip_len, s.stride, settings.num_clips, s.size)
    num_classes = 1 + max(int(r.label) for r in list(records["train"]) + list(records["test"]))
    model = VideoClassifier(backbone, num_classes, settings.supervised_dropout)
    ft = supervised_config(config, settings, out / "run", seed, len(train))
    run = run_finetune(ft, model=model, train_dataset=train, test_dataset=test)
    top1 = float(run.results["top1"])
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    history = [{"step": m["step"], "loss": round(m["loss"], 5)} for m in metrics]
    out.mkdir(parents=True, exist_ok=True)
    torch.save(backbone.state_dict(), path)
    saved_path.write_text(json.dumps({"key": key, "test_top1": top1, "history": history}))
    return {"backbone": backbone.eval(), "test_top1": top1, "history": history, "reused": False}
