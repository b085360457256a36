"""MCLPretrainDataset on tiny real videos with a real motion cache (built by `prepare`)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mcl_video.data import read_clip
from mcl_video.data.writer import write_video
from mcl_video.motion.cache import CacheSettings, MotionCache
from mcl_video.motion.prepare import prepare
from mcl_video.sampling import (
    MCLPretrainDataset,
    MotionFocusedCrop,
    MotionFocusedSampler,
    RandomResizedCropBox,
    UniformSampler,
)
from mcl_video.sampling.photometric import augment_item
from mcl_video.sampling.temporal import clip_frame_indices

GRID = (2, 3, 3)
CFG = {"clip_len": 4, "stride": 2, "size": 16}  # span 8 raw frames: videos need >= 16 frames


def write_square_video(path, frames, h=48, w=64, seed=0):
    """A textured background with a bright square moving right by 2 px per frame (H.264)."""
    rng = np.random.default_rng(seed)
    bg = (rng.random((h, w, 3)) * 120).astype(np.uint8)
    video = np.repeat(bg[None], frames, 0)
    for t in range(frames):
        x = 5 + (2 * t) % (w - 20)
        video[t, 10:26, x : x + 12] = 250
    write_video(path, video, codec="libx264")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """4 good 40-frame videos, one 12-frame video, and A/bad: cached, then its file corrupted."""
    base = tmp_path_factory.mktemp("pretrain")
    root, cache_dir = base / "videos", base / "cache"
    (root / "A").mkdir(parents=True)
    for i in range(4):
        write_square_video(root / "A" / f"v{i}.mp4", 40, seed=i)
    write_square_video(root / "A" / "short.mp4", 12, seed=9)
    write_square_video(root / "A" / "bad.mp4", 40, seed=5)
    settings = CacheSettings(clip_len=4, stride=2, frame_window=4, resize_short=None)
    summary = prepare(root, cache_dir, settings, progress=False)
    assert summary.prepared == 6
    (root / "A" / "bad.mp4").write_bytes(b"\x00not a video\x00" * 64)
    records = [f"A/v{i}.mp4" for i in range(4)] + ["A/short.mp4", "A/bad.mp4"]
    return root, MotionCache(cache_dir), records


def test_item_contract_and_short_video_filter(videos, caplog):
    root, cache, records = videos
    with caplog.at_level(logging.WARNING):
        ds = MCLPretrainDataset(root, records, cache, CFG, GRID)
    assert len(ds) == 5 and ds.num_short == 1  # short.mp4 (12 < 16 frames) dropped, logged
    assert "shorter than 16 raw frames" in caplog.text
    item = ds[0]
    augmented = augment_item(item)
    for name in ("q", "k0", "k1", "k2"):
        assert item[name].shape == (3, 4, 16, 16) and item[name].dtype == torch.uint8
        assert augmented[name].shape == (3, 4, 16, 16) and augmented[name].dtype == torch.float32
        assert set(item["photometric"][name]) == {"jitter_order", "jitter_factors", "grayscale", "blur_sigma"}
    assert item["target"].shape == GRID and item["target"].dtype == torch.float32
    assert item["order"].dtype == torch.long and int(item["order"]) in (0, 1)
    assert item["index"].dtype == torch.long and int(item["index"]) == 0
    assert item["video_id"] == "A/v0"
    kept = MCLPretrainDataset(root, records, cache, {**CFG, "drop_short": False}, GRID)
    assert len(kept) == 6 and kept.plan(4).draw.motion_focused is False  # short video: uniform


def test_plan_matches_item_exactly(videos):
    root, cache, records = videos
    ds = MCLPretrainDataset(root, records[:4], cache, CFG, GRID)
    for index in range(4):
        plan = ds.plan(index)
        for clip, start in zip(plan.indices, plan.draw.starts, strict=True):
            assert clip.tolist() == clip_frame_indices(start, 4, 2).tolist()
        item = ds[index]
        clip0 = read_clip(plan.path, plan.indices[0]).permute(0, 3, 1, 2)
        q = ds.augment.apply(clip0, plan.params[0]).permute(1, 0, 2, 3)
        assert item["q"].dtype == torch.uint8  # geometric only; the rest runs batched on the device
        torch.testing.assert_close(augment_item(item)["q"], q, rtol=0, atol=1e-5)
        motion = cache.get(plan.video_id)
        want = motion.alignment_target(plan.indices[0], plan.crops[0].as_tuple(), GRID)
        if plan.params[0].flip:
            want = want[..., ::-1]
        np.testing.assert_allclose(item["target"].numpy(), want, rtol=1e-6)


def test_target_flips_with_the_query(videos):
    root, cache, records = videos
    ds = MCLPretrainDataset(root, records[:4], cache, {**CFG, "flip_p": 1.0}, GRID)
    plan = ds.plan(1)
    assert plan.params[0].flip
    unflipped = cache.get(plan.video_id).alignment_target(plan.indices[0], plan.crops[0].as_tuple(), GRID)
    np.testing.assert_allclose(ds.query_target(plan).numpy(), unflipped[..., ::-1], rtol=1e-6)
    assert not np.allclose(unflipped, unflipped[..., ::-1])  # the square makes it asymmetric


def test_reproducible_per_seed_epoch_index_with_workers(videos):
    root, cache, records = videos
    ds = MCLPretrainDataset(root, records[:4], cache, CFG, GRID)
    ds.set_epoch(3)
    direct = [ds[i] for i in range(4)]
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    for i in range(4):
        torch.testing.assert_close(batches[i // 2]["q"][i % 2], direct[i]["q"])
        torch.testing.assert_close(batches[i // 2]["target"][i % 2], direct[i]["target"])
    ds.set_epoch(4)
    assert not torch.equal(ds[0]["q"], direct[0]["q"])


def test_corrupt_video_is_logged_counted_and_replaced(videos, caplog):
    root, cache, records = videos
    ds = MCLPretrainDataset(root, records, cache, CFG, GRID)
    bad = [i for i, v in enumerate(ds.videos) if v[1] == "A/bad"][0]
    with caplog.at_level(logging.WARNING):
        items = [ds[bad] for _ in range(2)]
    assert all(it["video_id"] != "A/bad" for it in items)
    assert int(items[0]["index"]) != bad
    assert str(root / "A" / "bad.mp4") in ds.failures
    assert "bad.mp4" in caplog.text
    batches = list(DataLoader(ds, batch_size=5, num_workers=0))  # a whole epoch completes
    assert batches[0]["q"].shape[0] == 5


def test_switches_select_strategies_and_resize_short(videos):
    root, cache, records = videos
    on = MCLPretrainDataset(root, records[:4], cache, CFG, GRID)
    assert type(on.sampler) is MotionFocusedSampler and type(on.cropper) is MotionFocusedCrop
    off = MCLPretrainDataset(root, records[:4], cache,
                             {**CFG, "motion_sampling": False, "motion_crop": False}, GRID)
    assert type(off.sampler) is UniformSampler and type(off.cropper) is RandomResizedCropBox
    assert off[0]["q"].shape == (3, 4, 16, 16)
    small = MCLPretrainDataset(root, records[:4], cache, {**CFG, "resize_short": 24}, GRID)
    assert small[2]["k1"].shape == (3, 4, 16, 16)


def test_configuration_errors_are_clear(videos, tmp_path):
    root, cache, records = videos
    with pytest.raises(ValueError, match="unknown sampling option"):
        MCLPretrainDataset(root, records, cache, {**CFG, "clip_length": 8}, GRID)
    with pytest.raises(ValueError, match="rebuild the cache"):
        MCLPretrainDataset(root, records, cache, {**CFG, "stride": 1}, GRID)
    with pytest.raises(ValueError, match="no usable training videos"):
        MCLPretrainDataset(root, ["B/missing.mp4"], cache, CFG, GRID)
    shutil.rmtree(tmp_path)


def test_show_tubelets_writes_png_and_gif(videos, tmp_path):
    from PIL import Image

    from mcl_video.sampling.show import resolve_video_id, show_tubelets

    root, cache, _ = videos
    assert resolve_video_id(root / "A" / "v1.mp4", cache) == (root, "A/v1")
    with pytest.raises(KeyError, match="mcl prepare"):
        resolve_video_id(root / "A" / "nothing.mp4", cache)
    paths = show_tubelets(root / "A" / "v1.mp4", cache, tmp_path, seed=3, frames=2, config={"size": 16})
    png = Image.open(paths["png"])
    assert png.size[0] > 400 and png.size[1] > 300
    gif = Image.open(paths["gif"])
    assert gif.n_frames == 4 and gif.size == (32, 32)  # the 4-frame query at 16 px, shown 2x
