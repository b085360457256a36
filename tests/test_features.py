"""EvalClipDataset (clip tables, crops, unreadable videos) and extract_features (averaging, frozen
check, rank split, .npz round trip) on tiny videos written with PyAV."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mcl_video.data import read_clip
from mcl_video.data.writer import write_video
from mcl_video.evaluation.datasets import (
    EvalClipDataset,
    clip_indices,
    collate_videos,
    crop_offsets,
    normalize_clip,
)
from mcl_video.evaluation.features import (
    extract_features,
    load_features,
    merge_shards,
    save_features,
    shard_indices,
)


def write_flat_video(path, num_frames=10, h=40, w=56, seed=0):
    """A tiny MPEG-4 video; frame t is one random colour plus brightness 18*t everywhere."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, size=(1, 1, 3))
    frames = [np.broadcast_to(base + 18 * t, (h, w, 3)).astype(np.uint8) for t in range(num_frames)]
    return write_video(path, frames, fps=10, codec="mpeg4")


class MeanColour(torch.nn.Module):
    """Stand-in backbone: pooled features = per-channel mean and a learnable-free linear mix."""

    num_features = 4

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv3d(3, 4, 1)
        self.bn = torch.nn.BatchNorm3d(4)
        torch.nn.init.constant_(self.proj.weight, 0.5)

    def forward(self, x):  # B x 3 x T x H x W -> B x 4
        return self.bn(self.proj(x)).mean(dim=(2, 3, 4))


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    write_flat_video(root / "a" / "v0.mp4", num_frames=12, seed=0)
    write_flat_video(root / "a" / "v1.mp4", num_frames=5, seed=1)  # shorter than one clip span
    (root / "a" / "broken.mp4").write_bytes(b"not a video at all" * 10)
    write_flat_video(root / "a" / "v3.mp4", num_frames=9, seed=3)
    records = [
        SimpleNamespace(path=f"a/{n}.mp4", label=lab)
        for n, lab in (("v0", 0), ("v1", 1), ("broken", 1), ("v3", 2))
    ]
    return root, records


def test_clip_indices_table():
    # 20 frames, 4-frame clips at stride 2 span 7 frames: starts linspace(0, 13, 3) = 0, 6.5 -> 6, 13
    np.testing.assert_array_equal(clip_indices(20, 4, 2, 3), [[0, 2, 4, 6], [6, 8, 10, 12], [13, 15, 17, 19]])
    # short video (5 frames < span 7): every clip starts at 0, the tail repeats the last frame
    np.testing.assert_array_equal(clip_indices(5, 4, 2, 2), [[0, 2, 4, 4], [0, 2, 4, 4]])
    np.testing.assert_array_equal(clip_indices(7, 4, 2, 1), [[0, 2, 4, 6]])
    with pytest.raises(ValueError, match="positive"):
        clip_indices(0, 4, 2, 1)


def test_crop_offsets_table():
    assert crop_offsets(40, 56, 40, "center") == [(0, 8)]
    assert crop_offsets(40, 56, 40, "three") == [(0, 0), (0, 8), (0, 16)]
    assert crop_offsets(60, 40, 40, "three") == [(0, 0), (10, 0), (20, 0)]
    with pytest.raises(ValueError, match="smaller"):
        crop_offsets(30, 56, 40, "center")


def test_normalize_clip_matches_imagenet_statistics():
    frames = torch.full((2, 3, 3, 3), 255, dtype=torch.uint8)
    x = normalize_clip(frames)
    assert x.shape == (3, 2, 3, 3)
    expected = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    torch.testing.assert_close(x[:, 0, 0, 0], torch.tensor(expected))


def test_dataset_items_views_and_unreadable(videos, caplog):
    root, records = videos
    ds = EvalClipDataset(root, records, clip_len=4, stride=2, num_clips=2, size=32, crop="three")
    item = ds[0]
    assert item["clips"].shape == (6, 3, 4, 32, 32) and ds.views_per_video == 6
    assert item["label"] == 0 and item["index"] == 0 and item["video_id"] == "a/v0.mp4"
    # clip 0 = frames 0,2,4,6; clip 1 = frames 5,7,9,11 (brightness rises 18 per frame)
    t_means = item["clips"][:, 0].mean(dim=(2, 3))  # views x T, red channel
    assert (t_means[0, 1:] > t_means[0, :-1]).all()
    assert t_means[3, 0] > t_means[0, 2]  # clip 1 starts after clip 0's third frame
    assert ds[2] is None and "broken.mp4" in caplog.text
    batch = collate_videos([ds[2], ds[1], ds[3]])
    assert batch["clips"].shape == (2, 6, 3, 4, 32, 32)
    assert batch["index"].tolist() == [1, 3] and batch["video_id"] == ["a/v1.mp4", "a/v3.mp4"]
    assert collate_videos([None]) is None


def test_random_crop_mode_is_a_window_of_the_source_frames(tmp_path):
    # a blocky random texture, so each (start, top, left, flip) of the crop shows different pixels
    rng = np.random.default_rng(0)
    frames = [np.repeat(np.repeat(rng.integers(0, 256, (10, 14, 3)), 4, 0), 4, 1).astype(np.uint8)
              for _ in range(12)]
    (tmp_path / "a").mkdir()
    write_video(tmp_path / "a" / "tex.mp4", frames, fps=10, codec="mpeg4")
    records = [SimpleNamespace(path="a/tex.mp4", label=4)]
    ds = EvalClipDataset(tmp_path, records, clip_len=4, stride=2, num_clips=5, size=24, crop="random",
                         short_side=32)
    source = normalize_clip(read_clip(tmp_path / "a" / "tex.mp4", list(range(12)), resize_short=32))
    _, n, h, w = source.shape  # 3 x 12 x 32 x 45: the short side resized to 32
    assert (n, h) == (12, 32)

    def window(t0, top, left, flip):
        crop = source[:, t0 : t0 + 7 : 2, top : top + 24, left : left + 24]  # frames t0, t0 + 2, ..., t0 + 6
        return crop.flip(-1) if flip else crop

    def where(view):
        """Every (start, top, left, flipped) whose window of the source equals the view exactly."""
        places = itertools.product(range(n - 6), range(h - 23), range(w - 23), (False, True))
        return [place for place in places if torch.equal(view, window(*place))]

    seen = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["clips"].shape == (1, 3, 4, 24, 24) and item["label"] == 4
        assert torch.equal(ds[0]["clips"], item["clips"])  # the same draw for the same (seed, epoch, index)
        found = where(item["clips"][0])
        assert len(found) == 1, found  # one window of the source, maybe mirrored
        seen.append(found[0])
    # the draws move: several starts and crop positions, both flips, over 8 epochs
    assert len({s[0] for s in seen}) > 1 and len({s[1:3] for s in seen}) > 1
    assert {s[3] for s in seen} == {False, True}


def test_extract_features_averages_views_and_keeps_backbone_frozen(videos):
    root, records = videos
    ds = EvalClipDataset(root, records, clip_len=4, stride=2, num_clips=2, size=32, crop="center")
    net = MeanColour()
    net.train()
    out = extract_features(net, ds, batch_size=2)
    assert net.training  # mode restored
    assert out["features"].dtype == np.float32 and out["features"].shape == (3, 4)
    assert out["ids"].tolist() == ["a/v0.mp4", "a/v1.mp4", "a/v3.mp4"]
    assert out["labels"].tolist() == [0, 1, 2] and out["skipped"] == [2]
    net.eval()
    with torch.no_grad():
        expected = net(ds[3]["clips"]).mean(dim=0)
    np.testing.assert_allclose(out["features"][2], expected.numpy(), rtol=1e-5, atol=1e-6)


class Drifting(MeanColour):
    def forward(self, x):
        self.bn.running_mean.add_(1.0)  # a hidden update: the frozen check must catch it
        return super().forward(x)


def test_extract_features_detects_a_changed_backbone(videos):
    root, records = videos
    ds = EvalClipDataset(root, records[:1], clip_len=4, stride=2, num_clips=1, size=32)
    with pytest.raises(RuntimeError, match="bn.running_mean"):
        extract_features(Drifting(), ds)


def test_rank_split_covers_every_video_once(videos):
    assert shard_indices(7, 0, 3) == [0, 3, 6] and shard_indices(7, 2, 3) == [2, 5]
    assert sorted(i for r in range(3) for i in shard_indices(7, r, 3)) == list(range(7))
    root, records = videos
    ds = EvalClipDataset(root, records, clip_len=4, stride=2, num_clips=1, size=32)
    net = MeanColour().eval()
    shards = [extract_features(net, ds, rank=r, world_size=2) for r in (1, 0)]
    assert shards[0]["indices"].tolist() == [1, 3] and shards[1]["skipped"] == [2]
    merged = merge_shards(shards)
    full = extract_features(net, ds)
    assert merged["indices"].tolist() == [0, 1, 3] and merged["skipped"] == [2]
    # a share is batched differently from the whole set: the conv's summation order may move the last bit
    np.testing.assert_allclose(merged["features"], full["features"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(merged["ids"], full["ids"])


def test_npz_round_trip(tmp_path):
    res = {
        "features": np.eye(2, 3, dtype=np.float32),
        "labels": np.array([1, 0]),
        "ids": np.array(["x/a.mp4", "y/b.avi"]),
        "indices": np.array([0, 1]),
    }
    back = load_features(save_features(tmp_path / "f" / "train.npz", res))
    for k in res:
        np.testing.assert_array_equal(back[k], res[k])


def test_mcl_evaluate_end_to_end(tmp_path, capsys):
    """`mcl evaluate` on 3 classes x 3 tiny videos (UCF101-format lists): every protocol, every file."""
    import json

    from mcl_video.cli import main

    root, ann = tmp_path / "videos", tmp_path / "ann"
    ann.mkdir()
    classes = ["Dim", "Mid", "Bright"]
    train, test = [], []
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for g in range(3):
            rel = f"{name}/v_{name}_g0{g + 1}_c01.mp4"
            write_flat_video(root / rel, num_frames=6, h=32, w=40, seed=10 * c + g)
            (train if g < 2 else test).append((rel, c))
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(classes)))
    (ann / "trainlist01.txt").write_text("".join(f"{r} {c + 1}\n" for r, c in train))
    (ann / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--random-init",
        "--backbone",
        "tiny_r2plus1d",
        "--backbone-options",
        '{"widths": [4, 8, 8, 8]}',
        "--data",
        str(root),
        "--annotations",
        str(ann),
        "--num-clips",
        "2",
        "--clip-len",
        "4",
        "--size",
        "32",
        "--fc-epochs",
        "5",
        "--fc-lr",
        "1.0",
        "--knn-k",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "svm" in table and "R@1" in table
    res = json.loads((out / "results.json").read_text())
    assert res["num_train"] == 6 and res["num_test"] == 3 and res["num_classes"] == 3
    for name in ("svm", "fc"):
        assert 0.0 <= res[name]["top1"] <= 1.0 and res[name]["top5"] == 1.0  # 3 classes: top-5 is trivial
        assert (out / f"confusion_{name}.png").stat().st_size > 0
        assert np.loadtxt(out / f"confusion_{name}.csv", delimiter=",").sum() == 3
    assert res["retrieval"]["R@20"] == 1.0  # 6 training videos cover all 3 classes
    feats = load_features(out / "features_train.npz")
    assert feats["features"].shape == (6, 8) and sorted(feats["labels"].tolist()) == [0, 0, 1, 1, 2, 2]
