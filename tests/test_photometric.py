"""Batched photometric augmentation on the device equals the per-sample reference (ClipAugment.apply)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mcl_video.sampling.augment import JITTER_NAMES, AugmentParams, ClipAugment
from mcl_video.sampling.photometric import (
    PHOTOMETRIC_KEY,
    augment_batch,
    augment_item,
    gaussian_blur,
    photometric,
    photometric_params,
)
from mcl_video.sampling.spatial import CropBox

SIZE = 20
CROP = CropBox(0, 0, SIZE, SIZE)


def float_clip(seed: int, t: int = 3) -> torch.Tensor:
    """``T x 3 x SIZE x SIZE`` float in [0, 1] with smooth and saturated regions (hue edge cases)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(t, 3, SIZE, SIZE, generator=g)
    x[:, :, :4] = x[:, :1, :4]  # gray pixels: max == min
    x[:, 0, 4:6] = 1.0  # a channel at the maximum
    x[:, :, 6:8, :4] = 0.0  # black
    return x


def batched(clips: list[torch.Tensor], params: list[AugmentParams], normalize: bool = True) -> torch.Tensor:
    """Run the batched path on views ``C x T x H x W`` flipped like the dataset does."""
    aug = ClipAugment(size=SIZE)
    views = torch.stack([aug.geometric(c, p).permute(1, 0, 2, 3) for c, p in zip(clips, params)])
    tensors = [photometric_params(p) for p in params]
    stacked = {k: torch.stack([t[k] for t in tensors]) for k in tensors[0]}
    return photometric(views, stacked, normalize)


def reference(clip: torch.Tensor, params: AugmentParams, normalize: bool = True) -> torch.Tensor:
    return ClipAugment(size=SIZE, normalize=normalize).apply(clip, params).permute(1, 0, 2, 3)


def drawn(n: int, seed: int, **options) -> list[AugmentParams]:
    aug = ClipAugment(size=SIZE, **options)
    rng = np.random.default_rng(seed)
    return [aug.draw(CROP, rng) for _ in range(n)]


@pytest.mark.parametrize("seed", range(6))
def test_batched_equals_per_sample_reference_for_drawn_parameters(seed):
    params = drawn(8, seed)
    clips = [float_clip(100 * seed + i) for i in range(8)]
    out = batched(clips, params)
    assert out.dtype == torch.float32 and out.shape == (8, 3, 3, SIZE, SIZE)
    for i in range(8):
        torch.testing.assert_close(out[i], reference(clips[i], params[i]), rtol=0, atol=1e-5)


def test_every_step_alone_matches_the_reference():
    clip = float_clip(7)
    base = AugmentParams(CROP, (), False, None, False)
    cases = [dataclasses.replace(base, jitter=((name, f),)) for name, f in
             (("brightness", 1.3), ("brightness", 0.6), ("contrast", 1.4), ("contrast", 0.6),
              ("saturation", 1.4), ("saturation", 0.0), ("hue", 0.1), ("hue", -0.5), ("hue", 0.5))]
    cases += [dataclasses.replace(base, grayscale=True), dataclasses.replace(base, flip=True)]
    cases += [dataclasses.replace(base, blur_sigma=s) for s in (0.1, 0.7, 2.0, 4.0)]  # 4.0: capped kernel
    out = batched([clip] * len(cases), cases, normalize=False)
    for i, p in enumerate(cases):
        torch.testing.assert_close(out[i], reference(clip, p, normalize=False), rtol=0, atol=1e-5,
                                   msg=lambda m, p=p: f"{p}: {m}")


def test_jitter_order_is_each_samples_own():
    clip = float_clip(3)
    forward = (("brightness", 1.4), ("contrast", 0.6), ("saturation", 1.3), ("hue", 0.2))
    params = [AugmentParams(CROP, order, False, None, False) for order in (forward, forward[::-1])]
    out = batched([clip, clip], params, normalize=False)
    assert (out[0] - out[1]).abs().max() > 1e-3  # the order matters for these factors
    for i in range(2):
        torch.testing.assert_close(out[i], reference(clip, params[i], normalize=False), rtol=0, atol=1e-5)


def test_each_parameter_affects_only_its_own_sample():
    clips = [float_clip(i) for i in range(4)]
    params = drawn(4, 11)
    params[0] = AugmentParams(CROP, (), False, None, False)
    before = batched(clips, params)
    changes = [dict(jitter=(("hue", 0.3), ("brightness", 1.2))), dict(grayscale=True),
               dict(blur_sigma=1.9), dict(flip=not params[0].flip)]
    for change in changes:
        varied = [dataclasses.replace(params[0], **change)] + params[1:]
        after = batched(clips, varied)
        torch.testing.assert_close(after[1:], before[1:], rtol=0, atol=0)
        assert (after[0] - before[0]).abs().max() > 1e-3, change


def test_blur_with_mixed_sigmas_keeps_constants_and_mass():
    x = torch.full((3, 3, 2, 16, 16), 0.4)
    out = gaussian_blur(x, torch.tensor([0.2, 1.0, 3.0]))
    torch.testing.assert_close(out, x)
    impulse = torch.zeros(1, 1, 1, 15, 15)
    impulse[..., 7, 7] = 1.0
    spread = gaussian_blur(impulse, torch.tensor([1.0]))[0, 0, 0]
    taps = torch.exp(-0.5 * torch.arange(-3, 4, dtype=torch.float64) ** 2)
    taps = (taps / taps.sum()).float()
    torch.testing.assert_close(spread[4:11, 4:11], torch.outer(taps, taps), rtol=0, atol=1e-7)
    assert float(spread.sum()) == pytest.approx(1.0, abs=1e-6)


def test_uint8_views_equal_the_reference_on_uint8_clips():
    g = torch.Generator().manual_seed(0)
    clips = [torch.randint(0, 256, (3, 3, 30, 26), generator=g, dtype=torch.uint8) for _ in range(5)]
    aug = ClipAugment(size=SIZE)
    rng = np.random.default_rng(4)
    params = [aug.draw(CropBox(2, 1, 25, 22), rng) for _ in range(5)]
    out = batched(clips, params)
    for i in range(5):
        torch.testing.assert_close(out[i], reference(clips[i], params[i]), rtol=0, atol=1e-5)


def test_parameter_encoding_round_trip_and_batch_helpers():
    params = drawn(30, 2) + drawn(10, 3, colour=False)
    for p in params:
        t = photometric_params(p)
        names = [JITTER_NAMES[k] for k in t["jitter_order"].tolist() if k >= 0]
        assert names == [n for n, _ in p.jitter]
        assert t["jitter_factors"].tolist() == pytest.approx(
            [dict(p.jitter).get(n, d) for n, d in zip(JITTER_NAMES, (1, 1, 1, 0))], abs=1e-7)
        assert bool(t["grayscale"]) == p.grayscale
        assert float(t["blur_sigma"]) == pytest.approx(p.blur_sigma or 0.0, abs=1e-6)
    clip = float_clip(5)
    view = ClipAugment(size=SIZE).geometric(clip, params[0]).permute(1, 0, 2, 3)
    item = {"q": view, "index": torch.tensor(3), PHOTOMETRIC_KEY: {"q": photometric_params(params[0])}}
    single = augment_item(item)
    assert PHOTOMETRIC_KEY not in single and int(single["index"]) == 3
    torch.testing.assert_close(single["q"], reference(clip, params[0]), rtol=0, atol=1e-5)
    batch = augment_batch({"q": view[None], PHOTOMETRIC_KEY: {"q": {k: v[None] for k, v in
                                                                       item[PHOTOMETRIC_KEY]["q"].items()}}})
    torch.testing.assert_close(batch["q"][0], single["q"])
    plain = {"q": torch.zeros(1, 3, 2, 4, 4)}
    assert augment_batch(plain) is plain  # already augmented batches pass through


def _today_draw(aug: ClipAugment, rng: np.random.Generator) -> tuple:
    """The generator calls of the per-sample path, in its order (the distribution must not change)."""
    on, perm = rng.random() < aug.jitter_p, rng.permutation(4)
    b, c, s, h = aug.jitter
    factors = (rng.uniform(max(0.0, 1 - b), 1 + b), rng.uniform(max(0.0, 1 - c), 1 + c),
               rng.uniform(max(0.0, 1 - s), 1 + s), rng.uniform(-h, h))
    gray, blur, sigma, flip = rng.random() < aug.grayscale_p, rng.random() < aug.blur_p, \
        rng.uniform(*aug.blur_sigma), rng.random() < aug.flip_p
    jitter = tuple((JITTER_NAMES[i], float(factors[i])) for i in perm) if on else ()
    return jitter, bool(gray), float(sigma) if blur else None, bool(flip)


def test_draws_use_the_same_generator_calls():
    aug = ClipAugment(size=SIZE)
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(200):
        p = aug.draw(CROP, a)
        assert (p.jitter, p.grayscale, p.blur_sigma, p.flip) == _today_draw(aug, b)
    assert a.random() == b.random()  # same number of draws consumed


def test_bad_views_and_blur_range_are_refused():
    with pytest.raises(ValueError, match="B x 3 x T x H x W"):
        photometric(torch.zeros(2, 4, 4, 3), {})
    with pytest.raises(ValueError, match="blur_sigma"):
        ClipAugment(blur_sigma=(0.0, 1.0))
