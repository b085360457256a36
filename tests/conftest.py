"""Shared fixtures. Tests that need ../shared skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mcl_video.data.writer import write_video

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MCL_SHARED", REPO.parent / "shared"))

# keep the 2-core CI machine responsive and results repeatable
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = "the project's ../shared data folder: present in CI, absent in a user's clone"
        if os.environ.get("MCL_REQUIRE_SHARED") == "1":  # set by .ci/run when ../shared is there
            pytest.fail(f"needs {path} ({reason}), and MCL_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(f"needs {path} ({reason})")
    return path


@pytest.fixture
def shared():
    return shared_path


# ---- helpers several test files use: fixtures returning the helper (session scope, so module- and
# ---- session-scoped fixtures may request them too)


def _write_moving_square(path, frames=40, hw=(48, 64), seed=0, speed=(1, 2)) -> Path:
    """A textured background panning slowly with a 14 px red square moving over it; MPEG-4 (qscale 2)
    in the container ``path``'s extension names (``.avi``, ``.mp4``, ...)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    bg = (rng.random((h + 80, w + 80, 3)) * 255).astype(np.uint8)
    bg = np.repeat(np.repeat(bg[::4, ::4], 4, 0), 4, 1)[: h + 80, : w + 80]
    video = []
    for t in range(frames):
        img = bg[t // 2 : t // 2 + h, 10 : 10 + w].copy()
        y, x = (5 + speed[0] * t) % (h - 14), (5 + speed[1] * t) % (w - 14)
        img[y : y + 14, x : x + 14] = (250, 30, 30)
        video.append(img)
    return write_video(path, video, fps=25, codec="mpeg4", options={"qscale": "2"})


@pytest.fixture(scope="session")
def write_moving_square():
    """``write_moving_square(path, frames=40, hw=(48, 64), seed=0, speed=(1, 2)) -> path``."""
    return _write_moving_square


def _make_frames(n: int, h: int = 36, w: int = 48, seed: int = 0) -> np.ndarray:
    """``n x h x w x 3`` uint8 RGB frames: smooth colour ramps that move (JPEG keeps them within a few
    levels), with different content per channel so an RGB/BGR swap shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for t in range(n):
        r = 128 + 100 * np.sin((x + 2 * t) / 7.0)
        g = 128 + 90 * np.cos((y - t) / 5.0)
        b = np.full((h, w), 40.0 + 5 * t + rng.uniform(0, 1))
        frames.append(np.stack([r, g, b], axis=-1))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _write_rawframes(folder: Path, frames: np.ndarray, start: int = 1) -> Path:
    """Write ``img_00001.jpg``, ... (mmaction2 layout) with cv2.imwrite (BGR on disk, quality 100)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img_{i + start:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
    return folder


@pytest.fixture(scope="session")
def make_frames():
    """``make_frames(n, h=36, w=48, seed=0) -> n x h x w x 3`` uint8 moving colour ramps."""
    return _make_frames


@pytest.fixture(scope="session")
def write_rawframes():
    """``write_rawframes(folder, frames, start=1) -> folder`` (``img_00001.jpg``, ...)."""
    return _write_rawframes


# `mcl pretrain` overrides for a run of 2 steps of a very small tiny_r2plus1d on 8 x 32 x 32 clips (CPU)
TINY_PRETRAIN_ARGS = (
    "backbone=tiny_r2plus1d", "backbone_options={widths: [4, 8, 8, 16]}", "clip_len=8", "stride=2",
    "size=32", "queue_size=32", "feat_dim=16", "batch_size=2", "num_workers=0", "epochs=1",
    "max_steps=2", "optimizer=adamw", "lr=0.001", "warmup_steps=1", "schedule=constant",
    "checkpoint_every=1", "keep_checkpoints=3", "log_every=1", "progress=false", "tensorboard=false",
    "device=cpu", "sampling_options={colour: false}",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_pretrain_args() -> list[str]:
    """``key=value`` overrides of a 2-step CPU pretraining of the tiny backbone (add data/cache/out)."""
    return list(TINY_PRETRAIN_ARGS)


class ToyClips(torch.utils.data.Dataset):
    """MCL items drawn from a generator keyed by (epoch, index): deterministic under any sharding."""

    def __init__(self, n: int = 12, frames: int = 4, size: int = 8, grid: tuple = (4, 8, 8)):
        self.n, self.epoch, self.shape, self.grid = n, 0, (3, frames, size, size), grid

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        clip = torch.randn(self.shape, generator=g)
        item = {k: clip + 0.3 * torch.randn(self.shape, generator=g) for k in ("q", "k0", "k1", "k2")}
        item["target"] = torch.rand(self.grid, generator=g)
        item.update(order=torch.tensor(i % 2), index=torch.tensor(i), video_id=f"v{i:03d}")
        return item


@pytest.fixture(scope="session")
def toy_clips():
    """The ``ToyClips(n, frames, size, grid)`` dataset class (random MCL items, no video decoding)."""
    return ToyClips


def _tiny_real_config(tmp_path: Path, **kw):
    """The real MCL with a very small tiny_r2plus1d on 8 x 32 x 32 clips (feature grid 2 x 2 x 2), CPU."""
    from mcl_video.training import PretrainConfig

    base = dict(out=str(tmp_path / "run"), batch_size=4, num_workers=0, epochs=2, optimizer="sgd", lr=0.05,
                warmup_steps=2, checkpoint_every=1000, keep_checkpoints=2, log_every=1, progress=False,
                tensorboard=False, device="cpu", seed=3, backbone="tiny_r2plus1d",
                backbone_options={"widths": [4, 8, 8, 16]}, clip_len=8, size=32, queue_size=32, feat_dim=16,
                ema=0.9)
    return PretrainConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_real_config():
    """``tiny_real_config(tmp_path, **overrides) -> PretrainConfig`` of a tiny real MCL run on CPU."""
    return _tiny_real_config


def pytest_collection_modifyitems(config, items):
    """The `shared` marker and the `shared` fixture go together: `pytest -m shared` selects exactly the
    tests that read ../shared, and `-m "not shared"` those that run in a user's clone."""

    def mismatched(item) -> bool:
        uses = "shared" in getattr(item, "fixturenames", ())
        return uses != (item.get_closest_marker("shared") is not None)

    wrong = [item.nodeid for item in items if mismatched(item)]
    if wrong:
        raise pytest.UsageError(
            "tests that use the `shared` fixture must be marked @pytest.mark.shared, and only those: "
            + ", ".join(wrong))
