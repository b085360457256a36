"""`run_demo` end to end on a tiny benchmark (one run + one rerun), and the probe-table helpers it uses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mcl_video.demo import DemoSettings, run_demo
from mcl_video.demo.report import data_uri, format_rows
from mcl_video.evaluation import StackedEncoders, binomial_se, chance_levels, extract_stacked, probe_table

# test-only profile: 2 classes x (3 train + 2 test) videos, 1 step per arm
TINY = DemoSettings(
    "test", dict(classes=2, train_per_class=3, test_per_class=2, frames=32, size=64, workers=1),
    steps=1, batch_size=4, supervised_steps=1, supervised_batch_size=4, num_clips=1, saliency_videos=2,
    num_workers=0, claim=False,
)
ROW_FIELDS = {"key", "name", "motion_acc", "motion_se", "shape_acc", "shape_se", "r1", "r1_se"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    first = run_demo(work, quick=True, settings=TINY)
    cache = work / "quick" / "motion" / "videos"
    stamps = {p: p.stat().st_mtime_ns for p in sorted(cache.rglob("*.npz"))}
    second = run_demo(work, quick=True, settings=TINY)
    return work / "quick", first, second, stamps


def test_table_has_four_rows_and_says_no_claim(demo, capsys):
    out, first, _, _ = demo
    assert [r["name"] for r in first["rows"]] == ["random init", "supervised", "MoCo baseline", "MCL"]
    table = format_rows(first)
    for name in ("random init", "supervised", "MoCo baseline", "MCL", "chance"):
        assert name in table
    assert first["claim"] is False


def test_results_json_fields_and_values(demo):
    out, first, _, _ = demo
    saved = json.loads((out / "results.json").read_text())
    for key in ("profile", "claim", "seed", "benchmark", "classes", "num_train", "num_test", "chance",
                "rows", "saliency", "stages_s", "wall_s", "cpu_s", "pretrain", "supervised", "reused"):
        assert key in saved, key
    assert (saved["num_train"], saved["num_test"]) == (6, 4)
    assert saved["chance"]["motion"] == 0.5  # balanced test set, 2 classes
    assert saved["chance"]["r1"] == 0.5
    for row in saved["rows"]:
        assert set(row) == ROW_FIELDS
        for acc in ("motion", "shape"):
            p = row[f"{acc}_acc"]
            assert p in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 test videos
            assert row[f"{acc}_se"] == pytest.approx(math.sqrt(p * (1 - p) / 4))
    assert set(saved["saliency"]) == {"mcl", "moco"} and len(saved["saliency"]["mcl"]) == 2
    assert set(saved["stages_s"]) == {"data", "motion", "pretrain-mcl", "pretrain-moco", "supervised",
                                      "features", "probes", "report"}


def test_runs_report_and_pngs(demo):
    out, _, _, _ = demo
    for arm in ("mcl", "moco"):
        run = out / "runs" / arm
        assert (run / "config.yaml").is_file()
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["step"] == 1
    moco_log = (out / "runs" / "moco" / "metrics.jsonl").read_text().splitlines()
    mal = [json.loads(line)["loss_mal"] for line in moco_log]
    assert mal == [0.0]  # the baseline has MAL off
    page = (out / "report.html").read_text()
    for png in ("curves.png", "saliency.png"):
        assert (out / png).stat().st_size > 10_000
        assert f'src="{data_uri(out / png)}"' in page  # embedded: the page alone shows it
    assert "no claim" in page


def test_rerun_reuses_data_cache_and_runs(demo):
    _, first, second, stamps = demo
    assert first["reused"]["data"] is False and second["reused"]["data"] is True
    assert first["reused"]["motion_prepared"] == 10 and second["reused"]["motion_prepared"] == 0
    assert second["reused"]["motion_skipped"] == 10
    assert all(second["reused"][k] for k in ("mcl", "moco", "supervised"))
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    # same weights, same features: identical numbers
    assert [r["motion_acc"] for r in first["rows"]] == [r["motion_acc"] for r in second["rows"]]


def test_binomial_se_and_chance_levels():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(1.0, 10) == 0.0
    train_y = np.array([0, 0, 0, 1])
    test_y = np.array([0, 1, 1, 1])
    c = chance_levels(train_y, test_y)
    assert c["accuracy"] == 0.75
    assert c["r1"] == pytest.approx(0.25 * 0.75 + 0.75 * 0.25)


def test_stacked_encoders_columns_match_each_encoder():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 4)
    a.num_features, b.num_features = 2, 4
    stacked = StackedEncoders({"a": a, "b": b})
    x = torch.randn(5, 3)
    parts = stacked.split(stacked(x).detach().numpy())
    np.testing.assert_allclose(parts["a"], a(x).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(parts["b"], b(x).detach().numpy(), rtol=1e-6)
    assert stacked.num_features == 6


def test_extract_stacked_matches_each_encoder_alone():
    a, b = torch.nn.Conv3d(3, 2, 1), torch.nn.Conv3d(3, 4, 1)
    encoders = {name: _Pooled(conv) for name, conv in (("a", a), ("b", b))}
    clips = torch.randn(3, 2, 3, 2, 4, 4)  # 3 videos x 2 clips x C x T x H x W
    dataset = [{"clips": clips[i], "label": i % 2, "video_id": f"v{i}", "index": i} for i in range(3)]
    parts, result = extract_stacked(encoders, dataset, batch_size=2)
    assert result["features"].shape == (3, 6) and list(result["ids"]) == ["v0", "v1", "v2"]
    for name, enc in encoders.items():  # each block = that encoder's clip features averaged over clips
        want = torch.stack([enc(clips[i]).mean(0) for i in range(3)]).detach().numpy()
        np.testing.assert_allclose(parts[name], want, rtol=1e-5, atol=1e-6)


class _Pooled(torch.nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv, self.num_features = conv, conv.out_channels

    def forward(self, x):  # B x 3 x T x H x W -> B x C
        return self.conv(x).mean(dim=(2, 3, 4))


def test_probe_table_accuracies_r1_and_standard_errors():
    # 1-D features: class 0 near -1, class 1 near +1; the "appearance" task is unrelated to the feature
    xtr = np.array([[-1.0], [-1.1], [-0.9], [1.0], [1.1], [0.9]])
    xte = np.array([[-1.05], [0.95], [1.05], [-0.95]])
    ytr, yte = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 1, 0])
    labels = {"motion": (ytr, yte), "shape": (np.array([0, 1, 0, 1, 0, 1]), np.array([1, 1, 1, 1]))}
    rows = probe_table({"enc": (xtr, xte)}, labels, retrieval="motion")["enc"]
    assert list(rows) == ["motion_acc", "motion_se", "shape_acc", "shape_se", "r1", "r1_se"]
    assert rows["motion_acc"] == 1.0 and rows["motion_se"] == 0.0 and rows["r1"] == 1.0
    assert rows["shape_se"] == pytest.approx(math.sqrt(rows["shape_acc"] * (1 - rows["shape_acc"]) / 4))
    with pytest.raises(ValueError, match="retrieval task"):
        probe_table({"enc": (xtr, xte)}, labels, retrieval="colour")


def test_supervised_bound_draws_fresh_clips_every_pass():
    # the training set's random clip/crop/flip is a function of (seed, epoch, video): the loop must move
    # the epoch on every pass, or each video is seen with one fixed view (the bound fell to 64% so)
    from torch import nn
    from torch.utils.data import DataLoader

    from mcl_video.demo.supervised import _fit

    class Views(torch.utils.data.Dataset):
        def __init__(self):
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"clips": torch.randn(1, 3, 2, 4, 4), "label": torch.tensor(i % 2)}

    data = Views()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 2))
    history = _fit(model, DataLoader(data, batch_size=2), steps=7, lr=1e-3, weight_decay=0.0, seed=0)
    assert len(history) == 7 and data.epochs == [0, 1, 2, 3]  # 2 batches per pass
