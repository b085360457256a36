"""Fine-tuning on the engine: a 2-step CPU run, the schedules, and the test-time view averaging."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from mcl_video.evaluation.finetune import (
    FinetuneConfig,
    VideoClassifier,
    cosine_lr,
    finetune_lr,
    predict_videos,
    run_finetune,
)


class TinyNet(nn.Module):
    """Stand-in backbone: conv + BN + global pool (``num_features`` = 6)."""

    num_features = 6

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm3d(6)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4))


class Views(torch.utils.data.Dataset):
    """In-memory dataset with EvalClipDataset's item layout; views_per_video clips per item."""

    def __init__(self, n=4, views=3, num_classes=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.clips = torch.randn(n, views, 3, 4, 8, 8, generator=g)
        self.records = [SimpleNamespace(path=f"v{i}.mp4", label=i % num_classes) for i in range(n)]

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        if self.records[i].path == "v2.mp4" and getattr(self, "broken", False):
            return None
        return {
            "clips": self.clips[i],
            "label": self.records[i].label,
            "index": i,
            "video_id": self.records[i].path,
        }


def test_cosine_lr_values():
    assert cosine_lr(0.01, 0, 10) == pytest.approx(0.01)
    assert cosine_lr(0.01, 5, 10) == pytest.approx(0.005)
    assert cosine_lr(0.01, 10, 10) == pytest.approx(0.0)


def _cfg(tmp_path, **kw):
    values = dict(backbone="tiny", out=str(tmp_path / "run"), epochs=5, max_steps=2, batch_size=2, lr=0.1,
                  dropout=0.5, num_workers=0, device="cpu", progress=False, tensorboard=False, log_every=1,
                  test_clips=1)
    values.update(kw)
    return FinetuneConfig(**values)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_finetune_runs_two_steps_and_updates_the_whole_network(tmp_path):
    torch.manual_seed(0)
    backbone = TinyNet()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = VideoClassifier(backbone, 2, 0.5)
    run = run_finetune(_cfg(tmp_path), model=model, train_dataset=Views(n=4, views=1),
                       test_dataset=Views(n=3, views=2, seed=1))
    rows = _metrics(run.run_dir)
    assert run.step == 2 and [r["step"] for r in rows] == [1, 2]
    # 2 steps an epoch, cosine over 5 epochs = 10 steps: lr(0) = 0.1, lr(1) = 0.05 (1 + cos(pi / 10))
    assert rows[0]["lr"] == pytest.approx(0.1)
    assert rows[1]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi / 10)))
    assert not torch.equal(backbone.conv.weight, before["conv.weight"])  # backbone trained, not frozen
    assert not torch.equal(backbone.bn.running_mean, before["bn.running_mean"])
    assert run.results["num_test"] == 3 and run.results["views_per_video"] is None
    ids = np.load(run.run_dir / "predictions.npz")["ids"].tolist()
    assert ids == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert run.config.optim.grad_clip == 40.0 and run.config.optim.weight_decay == 1e-4


def test_gradient_clipping_bounds_the_update(tmp_path):
    # one SGD step without momentum history: |update| = lr * |clipped grad| <= lr * grad_clip (+ wd)
    torch.manual_seed(0)
    backbone = TinyNet()
    model = VideoClassifier(backbone, 2, 0.0)
    before = [p.detach().clone() for p in backbone.parameters()]
    cfg = _cfg(tmp_path, epochs=1, max_steps=1, batch_size=4, lr=1.0, grad_clip=1e-3, dropout=0.0,
               weight_decay=0.0, test=False)
    run = run_finetune(cfg, model=model, train_dataset=Views(n=4, views=1))
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(run.model.backbone.parameters(), before)])
    assert 0 < moved.norm() <= 1e-3 + 1e-7


def test_constant_schedule_after_warm_up():
    cfg = FinetuneConfig(backbone="tiny", lr=0.2, warmup_steps=4, schedule="constant")
    assert [finetune_lr(cfg, s, 10) for s in (0, 1, 3, 4, 9)] == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.2])


def test_predict_videos_averages_softmax_over_views():
    torch.manual_seed(0)
    ds = Views(n=4, views=3, num_classes=3)
    ds.broken = True  # item 2 unreadable -> dropped
    model = VideoClassifier(TinyNet(), num_classes=3, dropout=0.9).eval()
    model.train()  # predict_videos must switch to eval (dropout off) and restore the mode
    pred = predict_videos(model, ds, batch_size=3)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = [model(ds.clips[i]).softmax(dim=1).mean(dim=0).double().numpy() for i in (0, 1, 3)]
    np.testing.assert_allclose(pred["scores"], np.stack(expected), rtol=1e-6)
    np.testing.assert_allclose(pred["scores"].sum(axis=1), 1.0)
    assert pred["indices"].tolist() == [0, 1, 3] and pred["labels"].tolist() == [0, 1, 0]


def test_every_epoch_gets_fresh_draws(tmp_path):
    class Items(Views):
        def __init__(self):
            super().__init__(n=4, views=1)
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    data = Items()  # 2 steps an epoch: 5 steps pass over it 3 times
    run_finetune(_cfg(tmp_path, epochs=3, max_steps=5, test=False), model=VideoClassifier(TinyNet(), 2),
                 train_dataset=data)
    assert data.epochs == [0, 1, 2]
