"""Fine-tuning: a 2-step CPU run, the cosine schedule, and the test-time view averaging."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from mcl_video.evaluation.finetune import (
    FinetuneConfig,
    VideoClassifier,
    cosine_lr,
    finetune,
    predict_videos,
    train_batches,
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


def test_finetune_runs_two_steps_and_updates_the_whole_network():
    torch.manual_seed(0)
    backbone = TinyNet()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = FinetuneConfig(epochs=5, max_steps=2, batch_size=2, lr=0.1, dropout=0.5)
    out = finetune(backbone, Views(n=4, views=1), Views(n=3, views=2, seed=1), cfg)
    assert out["steps"] == 2 and [h["step"] for h in out["history"]] == [0, 1]
    assert out["history"][0]["lr"] == pytest.approx(0.1) and out["history"][1]["lr"] == pytest.approx(0.05)
    assert not torch.equal(backbone.conv.weight, before["conv.weight"])  # backbone trained, not frozen
    assert not torch.equal(backbone.bn.running_mean, before["bn.running_mean"])
    assert out["test"]["confusion"].sum() == 3 and out["test"]["ids"].tolist() == [
        "v0.mp4",
        "v1.mp4",
        "v2.mp4",
    ]
    assert out["config"]["grad_clip"] == 40.0 and out["config"]["weight_decay"] == 1e-4


def test_gradient_clipping_bounds_the_update():
    # one SGD step without momentum history: |update| = lr * |clipped grad| <= lr * grad_clip (+ wd)
    torch.manual_seed(0)
    backbone = TinyNet()
    cfg = FinetuneConfig(
        epochs=1, max_steps=1, batch_size=4, lr=1.0, grad_clip=1e-3, dropout=0.0, weight_decay=0.0
    )
    before = [p.detach().clone() for p in backbone.parameters()]
    out = finetune(backbone, Views(n=4, views=1), Views(n=2, views=1), cfg)
    moved = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(out["model"].backbone.parameters(), before)]
    )
    assert 0 < moved.norm() <= 1e-3 + 1e-7


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


def test_train_batches_moves_the_epoch_every_pass_and_skips_empty_batches():
    class Items(torch.utils.data.Dataset):
        def __init__(self):
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return i

    data = Items()  # batches of one item; item 1 gives a None batch (nothing readable), which uses no step
    loader = torch.utils.data.DataLoader(data, batch_size=1, collate_fn=lambda b: None if b == [1] else b[0])
    assert list(train_batches(loader, 5)) == [(0, 0), (1, 2), (2, 0), (3, 2), (4, 0)]
    assert data.epochs == [0, 1, 2]  # 2 steps per pass
    assert list(train_batches(loader, 0)) == []
    plain = torch.utils.data.DataLoader(list("ab"), batch_size=2, collate_fn="".join)  # no set_epoch
    assert list(train_batches(plain, 3)) == [(0, "ab"), (1, "ab"), (2, "ab")]
