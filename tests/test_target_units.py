"""The alignment target in the release's units (METHOD §1, §4): the softmax time weights of MAL.

The release stores flow as uint8 images (128 + 255/40 per pixel), crops the query's flow like the clip,
resizes the crop to the input size and takes the Prewitt derivatives there. The cosines of MAL do not
see the target's scale, but the spatio-temporal term's time weights softmax_t(sum_hw S_t) do. The
release's computation is written out here independently (scipy's convolve, OpenCV's bilinear resize)
and compared with the cache's target. The release's JPEG rounding of the flow is left out: it is storage
noise (a 0.16 px step), not the units.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from conftest import shared_path
from mcl_video.motion.cache import FLOW_UNITS, CacheSettings, VideoMotion, release_units
from mcl_video.motion.prepare import _MotionAccumulator

KX = np.array([[-1.0, 0.0, 1.0]] * 3)
GRID = (4, 7, 7)
CASES = [((0, 0, 112, 112), 112), ((8, 16, 80, 88), 56), ((20, 10, 64, 96), 224)]  # crop, input size


def release_target(u, v, crop, size, grid=GRID):
    """The release's way: uint8 flow units, crop, bilinear resize to size x size, Prewitt (reflect),
    sums over T' equal segments, M_u + M_v, block means."""
    top, left, ch, cw = crop
    t, gh, gw = grid

    def resized(flow):
        units = (flow * 255.0 / 40.0 + 128.0).astype(np.float32)
        return np.stack([cv2.resize(f[top:top + ch, left:left + cw], (size, size),
                                    interpolation=cv2.INTER_LINEAR) for f in units]).astype(np.float64)

    derivs = [np.stack([ndimage.convolve(f, k, mode="reflect") for f in resized(flow)])
              for flow in (u, v) for k in (KX, KX.T)]
    bounds = np.arange(t + 1) * len(u) // t
    seg = [np.stack([d[bounds[i]:bounds[i + 1]].sum(0) for i in range(t)]) for d in derivs]
    m = np.hypot(seg[0], seg[1]) + np.hypot(seg[2], seg[3])
    return m.reshape(t, gh, size // gh, gw, size // gw).mean(axis=(2, 4))


def moving_square(speeds=(0.2, 0.21, 0.23, 0.26), n=16, hw=112, side=24):
    """A camera pan (1, 0.3) px with a square whose own motion speeds up from segment to segment."""
    u = np.full((n, hw, hw), 1.0, np.float32)
    v = np.full((n, hw, hw), 0.3, np.float32)
    y, x = 30.0, 20.0
    for t in range(n):
        s = speeds[t * len(speeds) // n]
        r, c = int(round(y)), int(round(x))
        u[t, r:r + side, c:c + side] += s
        v[t, r:r + side, c:c + side] += 0.5 * s
        x, y = x + s, y + 0.5 * s
    blur = lambda f: np.stack([cv2.GaussianBlur(a, (0, 0), 1.0) for a in f])  # noqa: E731
    return blur(u), blur(v)


def video_motion(u, v, field_short=24, representation="derivatives") -> VideoMotion:
    settings = CacheSettings(clip_len=8, stride=2, border=8, resize_short=None, field_short=field_short,
                             representation=representation)
    acc = _MotionAccumulator(settings, u.shape[1:])
    for a, b in zip(u, v, strict=True):
        acc.push(a, b)
    arrays, n = acc.finish()
    hw = list(u.shape[1:])
    info = {"num_frames": n, "frame_hw": hw, "flow_hw": hw, "representation": representation}
    return VideoMotion(arrays, info)


def time_weights(s):
    logits = s.sum(axis=(1, 2))
    e = np.exp(logits - logits.max())
    return e / e.sum()


def centred_logits(s):
    logits = s.sum(axis=(1, 2))
    return logits - logits.mean()


@pytest.mark.parametrize("crop, size", CASES)
@pytest.mark.parametrize("field_short, tol", [(112, 0.01), (24, 0.04)])  # 24: the cache's default
def test_time_weights_are_the_releases(crop, size, field_short, tol):
    u, v = moving_square()
    want = release_target(u, v, crop, size)
    vm = video_motion(u, v, field_short)
    got = vm.alignment_target(np.arange(16), crop, GRID, input_size=size)
    assert np.abs(time_weights(got) - time_weights(want)).max() < tol
    ratio = np.linalg.norm(centred_logits(got)) / np.linalg.norm(centred_logits(want))
    assert 0.9 < ratio < 1.1, ratio
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.98
    # in flow pixels at the flow's own size the time logits are 2.3-10x too flat: another weighting
    pixels = vm.alignment_target(np.arange(16), crop, GRID)
    assert np.linalg.norm(centred_logits(pixels)) / np.linalg.norm(centred_logits(want)) < 0.5
    assert np.abs(time_weights(pixels) - time_weights(want)).max() > 0.25


@pytest.mark.parametrize("crop, size", CASES)
def test_flow_representation_has_the_same_units(crop, size):
    """The ``flow`` representation stores the reduced flow (derivatives per pixel of the field): its
    target is converted to per flow pixel first. Its 6-bit flow cannot hold the 0.01 px speed steps of
    the test above, so larger ones here, and only the scale is compared."""
    u, v = moving_square(speeds=(0.2, 0.3, 0.4, 0.5))
    want = release_target(u, v, crop, size)
    got = video_motion(u, v, 56, "flow").alignment_target(np.arange(16), crop, GRID, input_size=size)
    assert 0.9 < got.sum() / want.sum() < 1.1
    ratio = np.linalg.norm(centred_logits(got)) / np.linalg.norm(centred_logits(want))
    assert 0.9 < ratio < 1.1, ratio


def test_release_units_factors():
    assert release_units((112, 112), 112) == (FLOW_UNITS, FLOW_UNITS)
    fy, fx = release_units((80, 88), (56, 44))
    assert fy == pytest.approx(FLOW_UNITS * 80 / 56) and fx == pytest.approx(FLOW_UNITS * 2)


@pytest.mark.shared
def test_full_frame_target_is_the_reference_in_uint8_units():
    """motion_golden.npz's st_target is in flow pixels of its 112 px flow: at input size 112 and the
    whole frame as the crop the release's units are 255/40 times it (6-bit stored fields: 2%)."""
    golden = np.load(shared_path("reference", "motion_golden.npz"))
    vm = video_motion(golden["flow_u"], golden["flow_v"], field_short=112)
    got = vm.alignment_target(np.arange(16), (0, 0, 112, 112), GRID, input_size=112)
    want = golden["st_target"] * 255.0 / 40.0
    np.testing.assert_allclose(got, want, rtol=0.02, atol=0.02 * want.max())
    np.testing.assert_allclose(vm.alignment_target(np.arange(16), (0, 0, 112, 112), GRID) * FLOW_UNITS, got,
                               rtol=1e-5)
