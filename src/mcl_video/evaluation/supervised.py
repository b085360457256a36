"""The supervised upper bound of the demo: the demo backbone trained with labels on the train split
(``finetune`` from a random init, dropout lowered), for a budget comparable to the pretraining arms."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch


def train_supervised(config, settings, work: Path, seed: int, records: dict) -> dict:
    """The supervised upper bound: ``finetune`` of a randomly initialised backbone on the train split.

    Returns ``{"backbone", "test_top1", "history", "reused"}``; the weights are kept in
    ``<work>/runs/supervised/backbone.pt`` and reused when the settings match."""
    from mcl_video.evaluation.datasets import EvalClipDataset
    from mcl_video.evaluation.finetune import FinetuneConfig, finetune
    from mcl_video.models import build_backbone

    out = work / "runs" / "supervised"
    ft = FinetuneConfig(lr=settings.supervised_lr, dropout=settings.supervised_dropout,
                        batch_size=settings.supervised_batch_size, max_steps=settings.supervised_steps,
                        epochs=10_000, seed=seed, num_workers=settings.num_workers, test_batch_size=8)
    key = {"finetune": dataclasses.asdict(ft), "backbone": config.backbone,
           "backbone_options": config.backbone_options, "clip_len": config.clip_len,
           "stride": config.stride, "size": config.size,
           "benchmark": json.loads((work / "data" / "meta.json").read_text())["config"]}
    torch.manual_seed(seed)
    backbone = build_backbone(config.backbone, **config.backbone_options)
    path = out / "backbone.pt"
    if path.is_file() and (out / "settings.json").is_file():
        saved = json.loads((out / "settings.json").read_text())
        if saved["key"] == json.loads(json.dumps(key)):
            backbone.load_state_dict(torch.load(path, weights_only=True))
            return {"backbone": backbone.eval(), "test_top1": saved["test_top1"],
                    "history": saved["history"], "reused": True}
    root = work / "data" / "videos"
    train = EvalClipDataset(root, records["train"], config.clip_len, config.stride, 1, config.size,
                            crop="random")
    test = EvalClipDataset(root, records["test"], config.clip_len, config.stride, settings.num_clips,
                           config.size)
    result = finetune(backbone, train, test, ft)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(backbone.state_dict(), path)
    history = [{"step": h["step"], "loss": round(h["loss"], 5)} for h in result["history"]]
    top1 = float(result["test"]["top1"])
    (out / "settings.json").write_text(json.dumps({"key": key, "test_top1": top1, "history": history}))
    return {"backbone": backbone.eval(), "test_top1": top1, "history": history, "reused": False}
