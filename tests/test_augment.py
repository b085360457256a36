"""Clip-consistent augmentation: identical parameters on every frame, exact values of each step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentParams, ClipAugment
from mcl_video.sampling.spatial import CropBox

FULL = CropBox(0, 0, 24, 32)
NONE = AugmentParams(crop=FULL, jitter=(), grayscale=False, blur_sigma=None, flip=False)


def random_clip(t=4, h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)


def test_identity_params_give_exact_normalisation():
    aug = ClipAugment(size=24)
    clip = random_clip(w=24)
    out = aug.apply(clip, dataclasses.replace(NONE, crop=CropBox(0, 0, 24, 24)))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (clip.float() / 255 - mean) / std)


def test_crop_selects_the_box_pixels():
    aug = ClipAugment(size=8, normalize=False)
    clip = random_clip()
    out = aug.apply(clip, dataclasses.replace(NONE, crop=CropBox(5, 9, 8, 8)))
    torch.testing.assert_close(out, clip[:, :, 5:13, 9:17].float() / 255)


def test_every_frame_gets_the_same_parameters():
    aug = ClipAugment(size=16)
    frame = random_clip(t=1)
    clip = frame.repeat(6, 1, 1, 1)
    rng = np.random.default_rng(0)
    for _ in range(10):
        crop = CropBox(int(rng.integers(8)), int(rng.integers(8)), 16, 20)
        out, params = aug(clip, crop, rng)
        assert out.shape == (6, 3, 16, 16)
        for t in range(1, 6):
            torch.testing.assert_close(out[t], out[0], rtol=0, atol=1e-6)
        # batched application equals frame-by-frame application with the same parameters
        varied = random_clip(t=3, seed=1)
        batched = aug.apply(varied, params)
        single = torch.cat([aug.apply(varied[t : t + 1], params) for t in range(3)])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)


def test_flip_mirrors_the_output():
    aug = ClipAugment(size=16)
    clip = random_clip()
    params = ClipAugment(size=16).draw(CropBox(2, 3, 20, 20), np.random.default_rng(5))
    a = aug.apply(clip, dataclasses.replace(params, flip=False))
    b = aug.apply(clip, dataclasses.replace(params, flip=True))
    torch.testing.assert_close(b, a.flip(-1))


def test_grayscale_gives_equal_channels_with_luma_weights():
    aug = ClipAugment(size=24, normalize=False)
    clip = random_clip(w=24)
    out = aug.apply(clip, dataclasses.replace(NONE, crop=CropBox(0, 0, 24, 24), grayscale=True))
    x = clip.float() / 255
    luma = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], luma, rtol=0, atol=1e-5)


def test_brightness_factor_scales_and_blur_preserves_constant():
    aug = ClipAugment(size=24, normalize=False)
    clip = random_clip(w=24) // 2
    p = dataclasses.replace(NONE, crop=CropBox(0, 0, 24, 24), jitter=(("brightness", 1.5),))
    torch.testing.assert_close(aug.apply(clip, p), (clip.float() / 255 * 1.5).clamp(0, 1))
    flat = torch.full((2, 3, 24, 24), 100, dtype=torch.uint8)
    blurred = aug.apply(flat, dataclasses.replace(p, jitter=(), blur_sigma=1.7))
    torch.testing.assert_close(blurred, torch.full_like(blurred, 100 / 255))


def test_draw_frequencies_match_probabilities():
    aug = ClipAugment()
    rng = np.random.default_rng(1)
    draws = [aug.draw(FULL, rng) for _ in range(4000)]
    se = lambda p: 4 * np.sqrt(p * (1 - p) / 4000)  # noqa: E731
    assert abs(np.mean([bool(d.jitter) for d in draws]) - 0.8) < se(0.8)
    assert abs(np.mean([d.grayscale for d in draws]) - 0.2) < se(0.2)
    assert abs(np.mean([d.blur_sigma is not None for d in draws]) - 0.5) < se(0.5)
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < se(0.5)
    sigmas = [d.blur_sigma for d in draws if d.blur_sigma is not None]
    assert 0.05 <= min(sigmas) < 0.06 and 0.99 < max(sigmas) <= 1.0  # 0.1-2 px at 224 is 0.05-1 px at 112
    for d in draws:
        f = dict(d.jitter)
        assert not f or (len(f) == 4 and 0.6 <= f["brightness"] <= 1.4 and abs(f["hue"]) <= 0.1)


def test_colour_off_removes_colour_cues():
    aug = ClipAugment(size=16, colour=False, normalize=False)
    rng = np.random.default_rng(2)
    clip = random_clip()
    for _ in range(8):
        out, params = aug(clip, CropBox(0, 0, 24, 32), rng)
        assert params.grayscale
        assert {n for n, _ in params.jitter} <= {"brightness", "contrast"}
        torch.testing.assert_close(out[:, 0], out[:, 1])
        torch.testing.assert_close(out[:, 1], out[:, 2])


def test_grayscale_probability_option_and_bad_arguments():
    aug = ClipAugment(grayscale_p=1.0)
    assert all(aug.draw(FULL, np.random.default_rng(s)).grayscale for s in range(10))
    with pytest.raises(ValueError, match="grayscale_p"):
        ClipAugment(grayscale_p=2.0)
    with pytest.raises(ValueError, match="permute"):
        ClipAugment().apply(torch.zeros(4, 24, 32, 3), NONE)


def test_blur_sigma_scales_with_the_input_size():
    """The release's sigma 0.1-2 px is for a 224 px input; at 48 px the same share of the frame is
    0.02-0.43 px, and a 5 px sprite keeps its contrast (a 2 px blur takes over a third of it)."""
    assert ClipAugment(size=224).blur_sigma == (0.1, 2.0)
    assert ClipAugment(size=48).blur_sigma == pytest.approx((0.1 * 48 / 224, 2.0 * 48 / 224))
    assert ClipAugment(size=48, blur_reference=None).blur_sigma == (0.1, 2.0)
    assert ClipAugment(size=48, blur_reference=112).blur_sigma == pytest.approx((48 / 1120, 96 / 112))
    frame = torch.zeros(1, 3, 48, 48, dtype=torch.uint8)
    frame[..., 20:25, 20:25] = 255
    peaks = {}
    for name, aug in (("scaled", ClipAugment(size=48, normalize=False)),
                      ("unscaled", ClipAugment(size=48, normalize=False, blur_reference=None))):
        params = dataclasses.replace(NONE, crop=CropBox(0, 0, 48, 48), blur_sigma=aug.blur_sigma[1])
        peaks[name] = float(aug.apply(frame, params).max())
    assert peaks["scaled"] > 0.95 and peaks["unscaled"] < 0.7, peaks
    with pytest.raises(ValueError, match="blur_reference"):
        ClipAugment(blur_reference=0)
